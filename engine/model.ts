// A checkpoint directory -> a ready model: config, tokenizer, chat template and native weights.
import { basename, join, resolve } from "node:path";
import { availableParallelism, freemem } from "node:os";
import { BLOCK_BYTES, isBlockDType, KV_DTYPES, native, type DeviceKind, type KvDtype, type MatmulPrecision, type ModelSpec, type NativeModel, type TensorRef } from "../native/index.js";
import { resolveDevice, type DeviceChoice } from "./device.js";
import type { ModelConfig } from "./types.js";
import { parseConfig } from "./config.js";
import { HfBackedTokenizer, loadTokenizer } from "./tokenizer.js";
import { chatTemplateFromConfig, loadChatTemplate, type JinjaChatTemplate } from "./chat-template.js";
import { readCheckpointTensors } from "./safetensors.js";
import { resolveWeights } from "./weights.js";
import { ropeInvFreq } from "./rope.js";
import { readJsonFile } from "./json-file.js";
import { isGgufPath, readGgufModel } from "./gguf-model.js";
import { ggufTokenizerFiles } from "./gguf-tokenizer.js";

export interface LoadModelOptions {
  /** compute threads; default: all cores */
  threads?: number;
  /** tokens per KV block; default 16 */
  kvBlockSize?: number;
  /** KV pool size in blocks; default: kvCacheMemory's, else 8 full-length sequences capped at ~1 GiB */
  kvBlocks?: number;
  /** KV pool size as bytes, or as a fraction of the memory free when the weights are loaded */
  kvCacheMemory?: KvCacheMemory;
  /** cap on prompt + completion tokens; default (and at most) the model's maxPositions */
  maxContext?: number;
  /** ranks each layer is split over (tensor parallelism): threads on the CPU, one device each on cuda; default 1 */
  tensorParallel?: number;
  /** where the serving forward runs; "auto" = cuda when a device is present, else cpu; default cpu */
  device?: DeviceChoice;
  /** which CUDA device (a data-parallel rank r loads onto device r); default 0 */
  deviceIndex?: number;
  /**
   * how the serving forward's activations meet bf16 weights (`--matmul-precision`); default "auto":
   * medium (x rounded to bf16, as llama.cpp, vLLM and PyTorch compute a bf16 model) for bf16
   * linears served on the CPU by one rank, else highest
   */
  matmulPrecision?: MatmulPrecision | "auto";
  /**
   * the KV pool's element type (`serve --kv-dtype`; llama.cpp's `-ctk/-ctv`); default "auto":
   * on the CPU the weights' own 16-bit type for a bf16 or f16 model, f16 for the block formats
   * (q8_0/q4_0/q4_k, as llama.cpp), f32 for an f32 model; bf16 on cuda (which has no f16 pool)
   */
  kvDtype?: KvDtype | "auto";
  /** cuda: decode steps replayed as CUDA graphs (`--cuda-graphs`); default true */
  cudaGraphs?: boolean;
  /** mark the model untrained even if its config does not say so */
  untrained?: boolean;
}

export type KvCacheMemory = { bytes: number } | { fraction: number };

/** bytes a tensor takes stored as its dtype */
function tensorBytes(t: TensorRef): number {
  const n = t.shape.reduce((a, b) => a * b, 1);
  return isBlockDType(t.dtype) ? (n / 32) * BLOCK_BYTES[t.dtype] : (t.dtype === "f32" ? 4 : 2) * n;
}

export interface LoadedModel {
  /** the directory's base name (the served model id unless renamed) */
  id: string;
  dir: string;
  config: ModelConfig;
  tokenizer: HfBackedTokenizer;
  /** `origin` says which file it came from (chat_template.jinja, chat_template.json, tokenizer_config.json) */
  chatTemplate: JinjaChatTemplate;
  native: NativeModel;
  /** longest prompt + completion the model serves */
  maxContext: number;
  /** randomly initialised weights (hybridchat init / the built-in demo) */
  untrained: boolean;
  /** what the serving forward's bf16 products run at (LoadModelOptions.matmulPrecision resolved) */
  matmulPrecision: MatmulPrecision;
  dispose(): void;
}

/** The native ModelSpec of a resolved config (a GGUF's rope_freqs divide the inverse frequencies). */
export function modelSpec(config: ModelConfig, ropeFreqFactors: Float32Array | null = null): ModelSpec {
  const rope = ropeInvFreq(config);
  if (ropeFreqFactors) rope.invFreq = rope.invFreq.map((f, i) => f / ropeFreqFactors[i]!);
  return {
    hiddenSize: config.hiddenSize,
    intermediateSize: config.intermediateSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    maxPositions: config.maxPositions,
    rmsNormEps: config.rmsNormEps,
    ropeInvFreq: rope.invFreq,
    ropeAttentionScaling: rope.attentionScaling,
    attentionBias: config.attentionBias,
    oBias: config.oBias,
    mlpBias: config.mlpBias,
    qkNorm: config.qkNorm,
    layerWindows: Int32Array.from(config.layerWindows),
    tieWordEmbeddings: config.tieWordEmbeddings,
  };
}

/**
 * Everything loadModel checks before touching native code: config, tokenizer, template,
 * tensors. Throws ModelLoadError; usable without the addon.
 */
export function inspectCheckpoint(dir: string): {
  config: ModelConfig;
  tokenizer: HfBackedTokenizer;
  chatTemplate: JinjaChatTemplate;
  tensors: TensorRef[];
  untrained: boolean;
  ropeFreqFactors?: Float32Array | null;
} {
  if (isGgufPath(dir)) return inspectGguf(dir);
  const configFile = join(dir, "config.json");
  const rawConfig = readJsonFile(configFile);
  const config = parseConfig(rawConfig, configFile);
  const tensors = resolveWeights(config, readCheckpointTensors(dir));
  const tokenizer = loadTokenizer(dir);
  const chatTemplate = loadChatTemplate(dir, tokenizer.config);
  // written by hybridchat init: random weights, say so wherever the model is served
  const marker = rawConfig.hybridchat;
  const untrained = !!marker && typeof marker === "object" && (marker as { untrained?: unknown }).untrained === true;
  return { config, tokenizer, chatTemplate, tensors, untrained };
}

/** A GGUF file as a checkpoint: config from its llama.* metadata, tensors mapped in place. */
function inspectGguf(file: string): ReturnType<typeof inspectCheckpoint> {
  const g = readGgufModel(file);
  const config = parseConfig(g.config, file);
  const tensors = resolveWeights(config, g.tensors, { quantizedEmbedding: true });
  const f = ggufTokenizerFiles(g.gguf);
  const tokenizer = new HfBackedTokenizer(f.tokenizerJson, f.tokenizerConfig, f.generationConfig, g.config, file);
  return { config, tokenizer, chatTemplate: chatTemplateFromConfig(f.tokenizerConfig, "the GGUF's tokenizer.chat_template"), tensors, untrained: false, ropeFreqFactors: g.ropeFreqFactors };
}

/** The layers' linears' storage, read off layer 0's q projection (every layer's is the same type). */
function linearDtype(tensors: readonly TensorRef[]): TensorRef["dtype"] {
  return tensors.find((t) => t.name === "L0.q")?.dtype ?? "f32";
}

/** The KV pool's element type that "auto" stands for (LoadModelOptions.kvDtype); a named one as it is. */
export function resolveKvDtype(choice: KvDtype | "auto", device: DeviceKind, tensors: readonly TensorRef[]): KvDtype {
  if (!(choice === "auto" || (KV_DTYPES as readonly string[]).includes(choice)))
    throw new RangeError(`kvDtype must be "auto", "f32", "bf16" or "f16", not ${JSON.stringify(choice)}`);
  if (choice !== "auto") return choice;
  if (device === "cuda") return "bf16";
  const w = linearDtype(tensors);
  return w === "f32" ? "f32" : w === "bf16" ? "bf16" : "f16";
}

/** The matmul precision that "auto" stands for (LoadModelOptions.matmulPrecision); a named one as it is. */
export function resolveMatmulPrecision(choice: MatmulPrecision | "auto", device: DeviceKind, tensorParallel: number, tensors: readonly TensorRef[]): MatmulPrecision {
  // a named value goes to the native model as it is, which refuses an unknown one by name
  if (choice !== "auto") return choice;
  // the reduced precisions exist for bf16 weights on one CPU rank (the native kernels run the rest as highest)
  return linearDtype(tensors) === "bf16" && device === "cpu" && tensorParallel <= 1 ? "medium" : "highest";
}

export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const absDir = resolve(dir);
  const { config, tokenizer, chatTemplate, tensors, untrained, ropeFreqFactors } = inspectCheckpoint(absDir);
  const maxContext = Math.max(1, Math.min(opts.maxContext ?? config.maxPositions, config.maxPositions));
  const kvBlockSize = opts.kvBlockSize ?? 16;
  const device = resolveDevice(opts.device ?? "cpu");
  const kvDtype = resolveKvDtype(opts.kvDtype ?? "auto", device, tensors);
  const matmulPrecision = resolveMatmulPrecision(opts.matmulPrecision ?? "auto", device, opts.tensorParallel ?? 1, tensors);
  // K and V for every layer, 4 (f32) or 2 (bf16, f16) bytes an element: admission counts blocks of these
  const bytesPerToken = 2 * config.numLayers * config.numKvHeads * config.headDim * (kvDtype === "f32" ? 4 : 2);
  const blocksPerSeq = Math.ceil(maxContext / kvBlockSize);
  const capBlocks = Math.floor((1 << 30) / (bytesPerToken * kvBlockSize));
  // a pool smaller than one context caps the context at the pool (the engine's maxContext)
  const mem = opts.kvCacheMemory;
  // on N tensor-parallel devices each holds ~1/N of the weights and 1/N of every block (its KV heads)
  const perDevice = device === "cuda" ? (opts.tensorParallel ?? 1) : 1;
  // a fraction of what is free once the weights are loaded: on a device, its memory less the weights it will hold
  const freeBytes = () =>
    device === "cuda" ? Math.max(0, native().cudaMemory(opts.deviceIndex ?? 0).freeBytes - tensors.reduce((s, t) => s + tensorBytes(t), 0) / perDevice) : freemem();
  const memBytes = mem === undefined ? undefined : "bytes" in mem ? mem.bytes : mem.fraction * freeBytes();
  const kvBlocks =
    opts.kvBlocks ?? (memBytes !== undefined ? Math.max(1, Math.floor((memBytes * perDevice) / (bytesPerToken * kvBlockSize))) : Math.max(blocksPerSeq, Math.min(8 * blocksPerSeq, capBlocks)));
  const nativeModel = native().createModel(modelSpec(config, ropeFreqFactors ?? null), tensors, {
    threads: opts.threads ?? availableParallelism(),
    kvBlockSize,
    kvBlocks,
    tensorParallel: opts.tensorParallel,
    device,
    deviceIndex: device === "cuda" ? opts.deviceIndex : undefined,
    matmulPrecision,
    kvDtype,
    cudaGraphs: opts.cudaGraphs,
  });
  let disposed = false;
  return {
    id: isGgufPath(absDir) ? basename(absDir).slice(0, -".gguf".length) : basename(absDir),
    dir: absDir,
    config,
    tokenizer,
    chatTemplate,
    native: nativeModel,
    maxContext,
    untrained: untrained || opts.untrained === true,
    matmulPrecision,
    dispose() {
      if (disposed) return;
      disposed = true;
      nativeModel.dispose();
    },
  };
}
