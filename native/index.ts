// The whole native surface, described once. Everything else in the project talks
// to C++ through these types; the addon itself is found and loaded here only.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Storage type of a weight tensor as the checkpoint holds it. */
export type DType = "f32" | "bf16" | "f16";
/** llama.cpp's weight-only block formats (native/src/quant.h): rows of whole blocks, raw blocks in a Uint8Array */
export type BlockDType = "q8_0" | "q4_0" | "q4_k" | "q6_k";
/** How a checkpoint tensor is stored: an element type, or (linear weights only) a block format. */
export type StorageDType = DType | BlockDType;
/** Weights a block holds (Q4_K: a super-block of 8 sub-blocks of 32); a row is whole blocks. */
export const BLOCK_ELEMS: Record<BlockDType, number> = { q8_0: 32, q4_0: 32, q4_k: 256, q6_k: 256 };
/** Bytes of one block (fp16 scales + quants), as llama.cpp lays them out. */
export const BLOCK_BYTES: Record<BlockDType, number> = { q8_0: 34, q4_0: 18, q4_k: 144, q6_k: 210 };
export function isBlockDType(t: string): t is BlockDType {
  return t === "q8_0" || t === "q4_0" || t === "q4_k" || t === "q6_k";
}
/** The block types we quantize to (q6_k is read only: GGUF files). */
export type QuantizeDType = Exclude<BlockDType, "q6_k">;
export function isQuantizeDType(t: string): t is QuantizeDType {
  return t === "q8_0" || t === "q4_0" || t === "q4_k";
}
/** Bytes of n weights stored as blocks (n a multiple of BLOCK_ELEMS[t]). */
export function blockBytes(t: BlockDType, n: number): number {
  return (n / BLOCK_ELEMS[t]) * BLOCK_BYTES[t];
}

/**
 * One weight tensor, located inside a file the native side memory-maps.
 * `name` is the canonical engine name (see engine/weights.ts), not the HF name:
 *   embed [V,C], final_norm [C], lm_head [V,C] (absent when tied),
 *   L{i}.attn_norm [C], L{i}.q [NH*HD,C], L{i}.k [NKV*HD,C], L{i}.v [NKV*HD,C], L{i}.o [C,NH*HD],
 *   L{i}.q_bias [NH*HD], L{i}.k_bias [NKV*HD], L{i}.v_bias [NKV*HD]   (attentionBias),
 *   L{i}.o_bias [C] (oBias), L{i}.gate_bias [I], L{i}.up_bias [I], L{i}.down_bias [C] (mlpBias),
 *   L{i}.q_norm [HD], L{i}.k_norm [HD]                                   (Qwen3 only),
 *   L{i}.mlp_norm [C], L{i}.gate [I,C], L{i}.up [I,C], L{i}.down [C,I]
 * Linear weights are row-major [out, in], as in HF/PyTorch.
 */
export interface TensorRef {
  name: string;
  file: string;
  /** absolute byte offset of the tensor's first byte in `file` */
  offset: number;
  /** a block type for linear weights of a quantized checkpoint (and a GGUF's embedding); `shape` is then the weights' [out, in] */
  dtype: StorageDType;
  shape: number[];
  /** q/k of a GGUF: rows in llama.cpp's rope order, in this many heads; loaded into HF order (a copy) */
  ropeHeads?: number;
}

/** Architecture numbers the kernels need; HF config quirks are resolved in TypeScript. */
export interface ModelSpec {
  hiddenSize: number; // C
  intermediateSize: number; // I
  numLayers: number; // L
  numHeads: number; // NH
  numKvHeads: number; // NKV
  headDim: number; // HD
  vocabSize: number; // V
  maxPositions: number;
  rmsNormEps: number;
  /** HD/2 inverse frequencies, already scaled (llama3, linear...) by the engine */
  ropeInvFreq: Float32Array;
  /** multiplier applied to cos/sin (1 except for some rope scalings) */
  ropeAttentionScaling: number;
  /** bias on q/k/v */
  attentionBias: boolean;
  /** bias on o (default false) */
  oBias?: boolean;
  /** bias on gate/up/down (default false) */
  mlpBias?: boolean;
  qkNorm: boolean;
  /** per layer: 0 = full causal attention, W = each query attends to its last W keys (itself included); default all 0 */
  layerWindows?: Int32Array;
  tieWordEmbeddings: boolean;
}

export interface ModelOptions {
  /** compute threads (ranks of intra-op parallelism); default: all cores */
  threads: number;
  /** tokens per KV-cache block */
  kvBlockSize: number;
  /** number of KV-cache blocks in the pool (capacity = kvBlocks * kvBlockSize tokens over all sequences) */
  kvBlocks: number;
  /** thread ranks each layer is split over (Megatron tensor parallelism, native/src/rank.h); default 1 */
  tensorParallel?: number;
  /** where the serving forward runs (native/src/exec.h): "cpu" (default) or "cuda" (weights, KV pool, activations on the device) */
  device?: DeviceKind;
  /** which CUDA device (default 0) */
  deviceIndex?: number;
  /** how the serving forward's activations meet bf16 weights (native/src/cpu/matmul_kernels.h); default "highest" */
  matmulPrecision?: MatmulPrecision;
  /** the KV pool's element type: "f32" (default), "bf16" or "f16" (the CPU only): 16-bit rows are rounded on write, widened on read */
  kvDtype?: KvDtype;
  /** cuda: decode steps (batch buckets 1, 2, 4, ..., 64) replayed as CUDA graphs; default true (one rank only) */
  cudaGraphs?: boolean;
}

/**
 * PyTorch's set_float32_matmul_precision names: "highest" keeps activations in fp32; "high" splits
 * each into two bf16 (≈ 16 bits) and "medium" rounds it to one bf16 (8 bits, llama.cpp's way, twice
 * the compute rate) for vdpbf16ps on bf16 weights, where the CPU has AVX512-BF16.
 */
export const MATMUL_PRECISIONS = ["highest", "high", "medium"] as const;
export type MatmulPrecision = (typeof MATMUL_PRECISIONS)[number];

/** a KV pool's element type (native/src/cpu/kv_elem.h); f16 on the CPU only */
export const KV_DTYPES = ["f32", "bf16", "f16"] as const;
export type KvDtype = (typeof KV_DTYPES)[number];

export type DeviceKind = "cpu" | "cuda";

/** Where a model's serving forward runs. */
/** NativeModel.stepCounts(): a decode step on cuda with graphs on is one graph launch. */
export interface StepCounts {
  graphReplays: number;
  graphCaptures: number;
  eagerSteps: number;
}

export interface DeviceInfo {
  kind: DeviceKind;
  /** "cpu", or the CUDA device's name ("host emulation" under native/tools/cuda-emu) */
  name: string;
  /** devices the serving forward runs on: 0 on the CPU; on cuda 1, or the tensor-parallel ranks (rank r on device r) */
  devices: number;
  /** cuda only: the GEMM behind the linears, "cublaslt" or the library's own "builtin" (cudaStatus().cublasLt says why) */
  gemm?: "cublaslt" | "builtin";
  /**
   * cpu only: bytes of block-format linears (q8_0/q4_0/q4_k) repacked at load for the int8 GEMM
   * (native/src/cpu/quant_repack.h); 0 with none, with HYBRIDCHAT_REPACK=0 or tensor parallelism
   */
  repackedBytes?: number;
  /** the KV pool's element type */
  kvDtype: KvDtype;
}

/**
 * One forward step over several sequences (continuous batching). Sequence `seqIds[s]`
 * gets `counts[s]` new tokens, taken in order from `tokens`; their positions continue
 * from the tokens that sequence already holds in the KV cache (a new id starts at 0).
 */
export interface ForwardBatch {
  seqIds: Int32Array;
  tokens: Int32Array;
  counts: Int32Array;
  /** "last": one row of logits per sequence; "all": one row per input token */
  logits: "last" | "all";
  /** per sequence, the adapter whose LoRA applies to it (null or absent: the base alone) */
  adapters?: (string | null)[];
  /**
   * Caller-owned logits: written on the worker thread, and the promise resolves to a view of
   * its first rows × V floats. Untouched by the caller until the step settles; too small → the
   * step fails with invalid_argument. Absent: a fresh array per step.
   */
  out?: Float32Array;
  /** rows sampled on the worker thread right after the step (native/src/cpu/sample.h) */
  sample?: ForwardSampling;
}

/** Numbers a row of ForwardSampling.params: row, temperature, top_k, top_p, min_p, u. */
export const SAMPLE_FIELDS = 6;

/**
 * Tokens picked as engine/sampling.ts Sampler.sample picks them without a grammar mask, bit
 * for bit. params holds SAMPLE_FIELDS numbers a row: the logits row,
 * temperature (<= 0: argmax), top_k (<= 0: off), top_p, min_p, and the request's uniform draw
 * u in [0, 1) (its Rng's nextFloat, which the JS sampler would draw; ignored when greedy).
 */
export interface ForwardSampling {
  params: Float64Array;
  /**
   * Penalties and logit_bias (engine/sampling.ts logitEdits): 4 numbers an edit — the sample
   * row (index into params' rows, ascending), token id, penalty subtracted, bias added (0: none)
   */
  edits?: Float64Array;
  /** out: tokens[i] = row i's token, written before the step settles */
  tokens: Int32Array;
}

/** The per-layer linear layers LoRA can target (canonical names; HF q_proj … down_proj). */
export type LinearName = "q" | "k" | "v" | "o" | "gate" | "up" | "down";

/**
 * LoRA as PEFT defines it: W x + (alpha / rank) · B A dropout(x), A [rank, in] initialised
 * like PEFT (kaiming-uniform, a = √5, i.e. U(−1/√in, 1/√in)) from `seed`, B [out, rank] zero.
 */
export interface LoraSpec {
  rank: number;
  alpha: number;
  /** dropout probability on the LoRA input, applied only in training forwards with grad */
  dropout: number;
  targets: LinearName[];
  seed: number;
}

/**
 * A role on the frozen base (DESIGN.md "One base, many roles"): LoRA matrices and/or a
 * scalar value head (hidden → 1, no bias, reading the final-normed hidden state, as
 * DeepSpeed-Chat's v_head), initialised to zero.
 */
export interface AdapterSpec {
  lora: LoraSpec | null;
  valueHead: boolean;
}

/**
 * One training micro-batch: whole sequences, each at positions 0..n−1, packed one after
 * another (no padding). Sequence s owns the next `counts[s]` entries of tokens/targets.
 */
export interface TrainBatch {
  tokens: Int32Array;
  counts: Int32Array;
  /** per position: the token whose log-prob is wanted there (usually the next token); −1 masks it */
  targets: Int32Array;
  /** the adapter applied (LoRA and value head); null = the base alone (the reference model) */
  adapter: string | null;
  /** also compute the adapter's value head at every position */
  values: boolean;
  /** keep what backward needs (false = a no-grad forward, e.g. reference log-probs) */
  grad: boolean;
  /** activation checkpointing: keep only each layer's input and recompute the rest in backward */
  checkpoint: boolean;
}

export interface TrainForwardResult {
  /** [tokens]: log softmax(logits)[target] at each position, 0 where masked */
  logp: Float32Array;
  /** [tokens]: value-head output at each position, when asked for */
  values: Float32Array | null;
}

/**
 * What receives gradients and optimizer steps: one adapter's tensors (its LoRA matrices
 * and value head), or every base tensor (full fine-tuning: the base is materialised once
 * into fp32 master weights the serving forward then reads too), or nothing.
 */
export type TrainableSet = { adapter: string } | { base: true } | null;

/** AdamW (decoupled weight decay, bias correction) after global-norm clipping. */
export interface OptimizerStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** clip the global L2 norm of all trainable gradients to this; 0 = no clipping */
  maxGradNorm: number;
}

export interface StepResult {
  /** global L2 norm of the gradients before clipping */
  gradNorm: number;
  /** optimizer steps taken so far (after this one) */
  step: number;
}

/** A parameter tensor of the base (canonical name) or of an adapter ("L{i}.{target}.lora_A" [r,in], "L{i}.{target}.lora_B" [out,r], "value_head" [C]). */
export interface ParameterInfo {
  name: string;
  shape: number[];
}

/** AdamW moments of every trainable tensor and the step count, for resuming a run. */
export interface OptimizerState {
  step: number;
  tensors: { name: string; expAvg: Float32Array; expAvgSq: Float32Array }[];
}

export interface KvStats {
  blockSize: number;
  totalBlocks: number;
  freeBlocks: number;
  sequences: number;
}

export interface NativeModel {
  /** Runs off the JS thread; resolves with float32 logits, rows in batch order, each of length V. */
  forward(batch: ForwardBatch): Promise<Float32Array>;
  /** Number of tokens the sequence holds in the KV cache (0 if unknown). */
  seqLength(seqId: number): number;
  /** Frees the sequence's KV blocks at once. Unknown ids are ignored. */
  freeSeq(seqId: number): void;
  kvStats(): KvStats;
  device(): DeviceInfo;
  /** How the serving steps ran: replays of a captured CUDA graph, captures, steps launched op by op (every step on the CPU). */
  stepCounts(): StepCounts;

  // ---- training (DESIGN.md "The one boundary that keeps training general") ----
  // forward/trainForward/trainBackward/step share one busy flag: one runs at a time.

  /** Adds a named adapter on the frozen base; throws code "adapter_exists" if the name is taken. */
  addAdapter(name: string, spec: AdapterSpec): void;
  /** Removes an adapter (and its gradients/optimizer state); unknown names throw "adapter_unknown". */
  removeAdapter(name: string): void;
  adapters(): string[];
  /** Chooses the trainable set; gradients and optimizer state of the previous set are dropped. */
  setTrainable(set: TrainableSet): void;
  /** Runs off the JS thread; with grad, keeps the activations for one trainBackward. */
  trainForward(batch: TrainBatch): Promise<TrainForwardResult>;
  /**
   * Accumulates (+=) gradients of the trainable set from dL/dlogp [tokens] (and dL/dvalue
   * [tokens] when the forward computed values) of the last grad forward, which it consumes.
   */
  trainBackward(dlogp: Float32Array, dvalues: Float32Array | null): Promise<void>;
  /** Clips, takes one AdamW step on the trainable set, and zeroes its gradients. */
  step(opt: OptimizerStep): Promise<StepResult>;
  zeroGrad(): void;
  /** Parameters of an adapter, or of the base when `adapter` is null. */
  parameters(adapter: string | null): ParameterInfo[];
  /** fp32 copy of one parameter (a base tensor reads as its merged/trained value if materialised). */
  readParameter(adapter: string | null, name: string): Float32Array;
  /** Overwrites one parameter (loading an adapter; a base write materialises fp32 master weights). */
  writeParameter(adapter: string | null, name: string, data: Float32Array): void;
  optimizerState(): OptimizerState;
  loadOptimizerState(state: OptimizerState): void;
  /**
   * Weight bytes moved between host and device since load (uploads of weights, adapters,
   * trainable tensors; downloads of trained ones read back): what a serving ⇄ training
   * switch costs. Always 0 on the CPU.
   */
  weightBytesMoved(): number;
  /** Folds the adapter's LoRA into fp32 copies of the targeted base weights (the single-adapter fast path); sequences on other adapters or the base still get exact results. */
  mergeAdapter(name: string): void;
  /** Drops the merged copies: the base reads the checkpoint's own weights again, bit for bit. */
  unmergeAdapter(): void;
  /** Releases weights (munmap), KV cache and threads. Idempotent. */
  dispose(): void;
}

/** One adapter of the batched LoRA op (NativeOps.lora). */
export interface LoraOpAdapter {
  /** rank rows lda apart, the op reading the first K floats of each ((rank − 1)·lda + K in all) */
  a: Float32Array;
  b: Float32Array;
  rank: number;
  scale: number;
  /** A's row stride (default K; more: a tensor-parallel rank's column shard of A) */
  lda?: number;
}

/** Small synchronous kernels exposed for the op tests (each checked against a float64 reference). */
export interface NativeOps {
  /** out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]); w stored as dtype (Float32Array for f32, Uint16Array for bf16/f16) */
  matmul(out: Float32Array, x: Float32Array, w: Float32Array | Uint16Array | Uint8Array, dtype: DType | BlockDType, bias: Float32Array | null, M: number, N: number, K: number, precision?: MatmulPrecision): void;
  /** out[M,C] = x / rms(x) * weight */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, C: number, eps: number): void;
  /** in place on x[T, H, HD] with HF rotate_half semantics at positions pos[T] */
  rope(x: Float32Array, pos: Int32Array, invFreq: Float32Array, T: number, H: number, HD: number, scaling: number): void;
  /** rope on q[T,NH,HD] and k[T,NKV,HD], in place, in one pass (one launch on a device) */
  ropeQk(q: Float32Array, k: Float32Array, pos: Int32Array, invFreq: Float32Array, T: number, NH: number, NKV: number, HD: number, scaling: number): void;
  /** x[M,C] += add, then out = x / rms(x) * weight (the residual add fused with the next pre-norm; out aliases neither) */
  residualRmsnorm(x: Float32Array, out: Float32Array, add: Float32Array, weight: Float32Array, M: number, C: number, eps: number): void;
  /** out[T,NH,HD] = causal GQA attention of q[T,NH,HD] over k,v[S,NKV,HD]; query t sits at position S-T+t; window W > 0: only its last W keys */
  attention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, T: number, S: number, NH: number, NKV: number, HD: number, window?: number): void;
  /**
   * out[T,NH,HD] = the serving attention over one layer's paged pool (blocks of [NKV, blockSize, HD];
   * Float32Array for f32, Uint16Array for bf16 — cuda only): query t of sequence seqOf[t] sees keys
   * [0, npos[t]) of its table's blocks (window W > 0: the last W). T > nseq runs the device's flash
   * prefill, T == nseq its decode split `splits` ways (0 = the device's pick); the CPU ignores splits.
   */
  pagedAttention(out: Float32Array, q: Float32Array, kPool: Float32Array | Uint16Array, vPool: Float32Array | Uint16Array, kvDtype: KvDtype, tables: Int32Array, nseq: number, maxBlocks: number, seqOf: Int32Array, npos: Int32Array, T: number, NH: number, NKV: number, HD: number, blockSize: number, window: number, splits: number): void;
  /** out[M,I] = silu(gate) * up */
  swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number): void;
  /** bf16/f16 <-> f32 conversions as the kernels do them (round to nearest even) */
  toF32(out: Float32Array, src: Uint16Array, dtype: "bf16" | "f16"): void;
  /** dequantizes whole blocks (CPU only) */
  toF32(out: Float32Array, src: Uint8Array, dtype: BlockDType): void;
  fromF32(out: Uint16Array, src: Float32Array, dtype: "bf16" | "f16"): void;
  /** quantizes as llama.cpp's reference quantizers do, whole blocks (32; q4_k 256) (CPU only) */
  fromF32(out: Uint8Array, src: Float32Array, dtype: BlockDType): void;

  // Training kernels (native/src/cpu/ops.h): gradients first, then the upstream gradient,
  // then what the forward saved. Weight gradients accumulate (+=); input gradients are overwritten.

  /** dx[M,C] = ∂L/∂x (may be the dout array), dweight[C] += ∂L/∂weight of rmsnorm */
  rmsnormBackward(dx: Float32Array, dweight: Float32Array, dout: Float32Array, x: Float32Array, weight: Float32Array, M: number, C: number, eps: number): void;
  /** in place on dx[T,H,HD]: the gradient of rope's output in, of its input out (same pos/invFreq/scaling) */
  ropeBackward(dx: Float32Array, pos: Int32Array, invFreq: Float32Array, T: number, H: number, HD: number, scaling: number): void;
  /** causal GQA attention of ONE sequence at positions 0..T-1: out[T,NH,HD] and lse[T,NH] (logsumexp of each row's scaled scores) for the backward */
  attentionTrainForward(out: Float32Array, lse: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, T: number, NH: number, NKV: number, HD: number, window?: number): void;
  /** dq[T,NH,HD], dk,dv[T,NKV,HD] (overwritten; dk/dv summed over each kv group's query heads) from dout[T,NH,HD] and the forward's q, k, v, lse */
  attentionBackward(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, lse: Float32Array, T: number, NH: number, NKV: number, HD: number, window?: number): void;
  /** dgate, dup [M,I] of out = silu(gate) * up */
  swigluBackward(dgate: Float32Array, dup: Float32Array, dout: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number): void;
  /** dtable[V,C] += dout[T,C] scattered to rows tokens[T] */
  embeddingBackward(dtable: Float32Array, dout: Float32Array, tokens: Int32Array, T: number, C: number): void;
  /** matmul's backward: dx[M,K] = dout·w (overwritten), dw[N,K] += doutᵀ·x, dbias[N] += Σ rows of dout; null skips a gradient */
  matmulBackward(dx: Float32Array | null, dw: Float32Array | null, dbias: Float32Array | null, dout: Float32Array, x: Float32Array, w: Float32Array | Uint16Array | Uint8Array, dtype: DType | BlockDType, M: number, N: number, K: number): void;
  /** logp[T] = log softmax(logits[T,V])[targets[t]]; a negative target masks its row (logp 0) */
  logprob(logp: Float32Array, logits: Float32Array, targets: Int32Array, T: number, V: number): void;
  /** dlogits[T,V] = dlogp[t]·(onehot(targets[t]) − softmax(logits[t])) (overwritten; may be the logits array; masked rows get 0) */
  logprobBackward(dlogits: Float32Array, dlogp: Float32Array, logits: Float32Array, targets: Int32Array, T: number, V: number): void;
  /**
   * Batched multi-adapter LoRA: out[t,:] += e.scale·(x[t,:]·e.aᵀ)·e.bᵀ with e = adapters[slot[t]]
   * for every row t whose slot is not −1; a [rank, K], b [N, rank].
   */
  lora(out: Float32Array, x: Float32Array, slot: Int32Array, adapters: LoraOpAdapter[], T: number, N: number, K: number): void;
}

/** The CUDA backend's state: `error` says why "cuda" is not in backends() (null when it is). */
export interface CudaStatus {
  /** libhybridchat_cuda.so exists: nvcc was found at build time (or HYBRIDCHAT_CUDA_LIB names a file) */
  built: boolean;
  /** it was dlopened and exports every entry point the addon needs */
  loaded: boolean;
  /** CUDA devices visible to it (0 when not loaded or no driver) */
  devices: number;
  /** device 0's name, null without one */
  deviceName: string | null;
  /** the library paths tried, in order (HYBRIDCHAT_CUDA_LIB, else beside the addon) */
  searched: string[];
  error: string | null;
  /** the GEMM behind the device's f32/bf16/f16 linears: "cublaslt" when libcublasLt loaded, else the library's own "builtin" kernel; null without a device */
  gemm: "cublaslt" | "builtin" | null;
  /** the cuBLASLt search (native/src/cuda/cublaslt.cu): what loaded, or why none did and every path tried */
  cublasLt: { path: string | null; version: number; searched: string[]; error: string | null };
}

/** Bytes one data-parallel rank holds for training (activations excluded), from the engine's own accounting. */
export interface TrainingMemory {
  /** fp32 trainable parameters: whole (stages 0-2), the shard plus, while gathered, the whole (stage 3) */
  params: number;
  /** gradients: whole (0-1), this rank's shard between steps (2-3) */
  grads: number;
  /** AdamW moments: whole (0), this rank's shard (1-3) */
  optimizer: number;
}

export type ZeroStage = 0 | 1 | 2 | 3;

/**
 * Data-parallel ranks over N models of the same checkpoint (each with the same trainable set
 * chosen), ZeRO stage 0-3 (native/src/train/zero.h). Calls are synchronous and refused ("busy")
 * while any rank's model runs.
 */
export interface DataParallelGroup {
  readonly size: number;
  readonly zeroStage: ZeroStage;
  /** after every rank's backward over its slice: sums gradients over ranks, clips, AdamW */
  step(opt: OptimizerStep): StepResult;
  /** stage 3: whole parameters on every rank before a forward or a read (no-op below 3) */
  gather(): void;
  /** stage 3: drops the whole parameters again, keeping each rank's shard */
  release(): void;
  gathered(): boolean;
  /** per rank */
  trainingMemory(): TrainingMemory[];
  /** the whole AdamW state (moments all-gathered from the shards), as one model's optimizerState() holds it;
   * to resume, load it into rank 0's model before dataParallel() (rank 0's state is broadcast then) */
  optimizerState(): OptimizerState;
}

/** A collective of the Communicator (native/src/dist/communicator.h). */
export type CommOp = "allReduceSum" | "reduceScatterSum" | "allGather" | "broadcast" | "barrier";

export interface CommRunOptions {
  /** broadcast's source rank (default 0) */
  root?: number;
  /** reduceScatterSum: the result lands in the rank's own shard of its buffer; allGather: each rank's
   *  send is its shard inside its receive buffer */
  inPlace?: boolean;
  /** "threads" (default): host buffers, thread communicators; "nccl": rank r's buffers on CUDA device r,
   *  collectives through NCCL (the emulator's stand-in libnccl under the host emulator) */
  backend?: "threads" | "nccl";
}

/** The CPU kernel variants, lowest first; HYBRIDCHAT_KERNELS=<one> forces it (when runnable). */
export const KERNEL_VARIANTS = ["portable", "avx2", "avx512", "avx512vnni", "avx512bf16"] as const;
export type KernelVariant = (typeof KERNEL_VARIANTS)[number];

/** Whether NCCL (libnccl.so.2, dlopened at run time) is usable for GPU ranks. */
export interface NcclStatus {
  loaded: boolean;
  /** NCCL_VERSION_CODE, e.g. 22105; 0 when not loaded */
  version: number;
  /** why not, naming every path searched */
  error: string | null;
  /** the libnccl.so.2 loaded; null when none */
  path: string | null;
}

export interface NativeBinding {
  /** which CPU kernel variant runs: one of KERNEL_VARIANTS (HYBRIDCHAT_KERNELS may pick a lower one) */
  cpuFeatures(): string;
  /** every CPU kernel variant this CPU and build can run, lowest first */
  kernelVariants(): KernelVariant[];
  /** physical compute backends built into this addon, e.g. ["cpu"] or ["cpu","cuda"] */
  backends(): string[];
  createModel(spec: ModelSpec, tensors: TensorRef[], options: ModelOptions): NativeModel;
  /** whether the CUDA library was built and loaded, and how many devices it sees */
  cudaStatus(): CudaStatus;
  /** a CUDA device's memory now (throws code "backend_unavailable" without one) */
  cudaMemory(device: number): { freeBytes: number; totalBytes: number };
  /** the op kernels on a given backend, for tests; an absent backend throws code "backend_unavailable" */
  ops(backend: "cpu" | "cuda"): NativeOps;
  /**
   * Runs one collective across buffers.length in-process thread ranks (rank r gets buffers[r];
   * f32 as Float32Array, bf16 as Uint16Array bit patterns; equal lengths) and returns what each
   * rank holds after it: the whole buffer for allReduceSum/broadcast/barrier/allGather (whose send
   * is rank r's shard of buffers[r]), rank r's shard for reduceScatterSum. Shards are blocks of
   * ceil(n/ranks) elements, the last ones shorter or empty.
   */
  commRun(op: CommOp, dtype: "f32" | "bf16", buffers: (Float32Array | Uint16Array)[], options?: CommRunOptions): (Float32Array | Uint16Array)[];
  ncclStatus(): NcclStatus;
  /** a fresh ncclUniqueId (128 bytes; rank 0 makes it, the others receive it); throws code nccl_unavailable where NCCL did not load */
  ncclUniqueId(): Uint8Array;
  /** Joins models (ranks 0..N−1, each its own model) into one data-parallel group; rank 0's parameters are broadcast. */
  dataParallel(models: NativeModel[], zeroStage: ZeroStage): DataParallelGroup;
  /** bytes malloc has handed out and not had back, process-wide (glibc mallinfo2: uordblks + hblkhd) */
  mallocBytes(): number;
  /**
   * The native sampler's exp (fdlibm's, as V8's Math.exp) of each x, the test that they agree
   * bit for bit: one at a time, or `batched` as the sampler runs it (AVX-512 where the kernels are)
   */
  samplingExp(x: Float64Array, batched: boolean): Float64Array;
  /** the native sampler on rows of `logits` [rows, V] (ForwardSampling.params' layout), as the forward step runs it */
  sampleRows(logits: Float32Array, V: number, params: Float64Array, edits?: Float64Array): Int32Array;
  /**
   * Test hooks for the CPU scheduling, run on a fresh pool of `threads`: run_chunks over [0, n)
   * `rounds` times (indices not covered exactly once, chunks not cut at `align`, chunks run,
   * ranks that missed one of the tiny regions run between them) ...
   */
  poolStress(opts: { threads: number; n: number; align: number; minChunk: number; rounds: number }): {
    miscovered: number;
    misaligned: number;
    chunks: number;
    regionMisses: number;
  };
  /** ... pools built, run one region and destroyed with their workers spinning, `times` over (returns those whose ranks all ran) ... */
  poolShutdown(threads: number, times: number): number;
  /** ... and cpu::matmul_group: out_i[M,N_i] = x[M,K]·w_iᵀ (+ bias_i), w_i as ops().matmul takes it */
  matmulGroup(
    threads: number,
    x: Float32Array,
    M: number,
    K: number,
    products: { out: Float32Array; w: Float32Array | Uint16Array | Uint8Array; dtype: string; N: number; bias?: Float32Array | null }[],
  ): void;
  /**
   * The same products over weights repacked as a CPU model repacks them at load (groups of 16 rows
   * interleaved block by block: native/src/cpu/quant_repack.h): each w (q8_0/q4_0/q4_k blocks, N a
   * multiple of 16) repacked for the call, then matmulGroup's region (group) or one matmul each.
   * Returns the bytes repacked.
   */
  matmulRepacked(
    threads: number,
    x: Float32Array,
    M: number,
    K: number,
    products: { out: Float32Array; w: Uint8Array; dtype: string; N: number; bias?: Float32Array | null }[],
    group: boolean,
  ): number;
  /** w's blocks repacked and unpacked again (the layout loses nothing) */
  repackRoundTrip(w: Uint8Array, dtype: string, N: number, K: number): Uint8Array;
  /** STREAM-like triad and GEMM peak probes for the benchmarks' roofline */
  triad(megabytes: number, threads: number, reps: number): Promise<number>; // GB/s
  gemmPeak(n: number, threads: number, reps: number): Promise<number>; // GFLOP/s
  /** the instruction ceiling: vfmadd231ps or vdpbf16ps zmm back to back on every thread, GFLOP/s summed; 0 where the CPU lacks it */
  instrPeak(instruction: "fma" | "dpbf16", threads: number, reps: number): Promise<number>;
}

/** Native failures arrive as this class with a stable code the server maps to a status. */
export class NativeError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = "NativeError";
  }
}

const here = dirname(fileURLToPath(import.meta.url));

function addonPath(): string {
  const candidates = [
    process.env.HYBRIDCHAT_ADDON,
    // from dist/native/index.js and from native/index.ts
    join(here, "..", "..", "native", "build", "Release", "hybridchat.node"),
    join(here, "build", "Release", "hybridchat.node"),
  ].filter((p): p is string => typeof p === "string" && p.length > 0);
  for (const p of candidates) if (existsSync(p)) return p;
  throw new NativeError(
    `native addon not found (looked in ${candidates.join(", ")}); run \`npm run build\``,
    "addon_missing",
  );
}

let binding: NativeBinding | undefined;

/** Loads the addon once, in a fixed order: HYBRIDCHAT_ADDON, then native/build/Release. */
export function native(): NativeBinding {
  if (!binding) {
    const require = createRequire(import.meta.url);
    binding = require(addonPath()) as NativeBinding;
  }
  return binding;
}
