// `hybridchat convert`'s work: an HF Llama checkpoint as the GGUF llama.cpp's convert_hf_to_gguf
// writes — its tensor names (token_embd, blk.N.attn_q, …, output_norm, output), `llama.*` and
// `tokenizer.ggml.*` metadata, q/k rows permuted into llama.cpp's rope order — in f32, f16,
// bf16 or a block type. Block types follow `hybridchat quantize`: the layers' linear weights
// whose rows are whole blocks, everything else as stored, so a quantized GGUF holds the bytes
// of the same quantized checkpoint. One tensor is in memory at a time.
import { closeSync } from "node:fs";
import { basename } from "node:path";
import { native, BLOCK_ELEMS, blockBytes, isBlockDType, type StorageDType } from "../native/index.js";
import { inspectCheckpoint } from "./model.js";
import { readCheckpointTensors, type StoredTensor, type TensorSource } from "./safetensors.js";
import { canonicalName, LINEAR } from "./weights.js";
import { ropeInvFreq } from "./rope.js";
import { ModelLoadError } from "./load-errors.js";
import { readBytes, toF32 } from "./quantize-checkpoint.js";
import { GGUF_LAYER_NAMES, GGUF_TOP_NAMES } from "./gguf-model.js";
import { TOKEN_TYPE } from "./gguf-tokenizer.js";
import { writeGguf, type GgufMeta } from "./gguf-writer.js";
import type { HfBackedTokenizer } from "./tokenizer.js";
import type { JsonObject } from "./json-file.js";
import { toBf16, toF16 } from "./half.js";
import type { ModelConfig } from "./types.js";

export type GgufOutType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_k";
export const GGUF_OUT_TYPES: readonly GgufOutType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"];

// llama_ftype of the file's main type (general.file_type)
const FILE_TYPE: Record<GgufOutType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k: 15, bf16: 32 };

export interface ConvertOptions {
  model: string;
  out: string;
  type: GgufOutType;
  /**
   * Block types only: the output head in the file's block type too (llama.cpp's quantizer
   * quantizes the head, where `hybridchat quantize` keeps it as stored). A tied model gets its
   * own `output` tensor, quantized from the embedding, which stays as stored (the table the
   * tokens' rows are read from, and what a CUDA device can upload).
   */
  quantizeHead?: boolean;
  onProgress?: (written: number, total: number) => void;
}

/** HF name → GGUF name (the reverse of gguf-model.ts's tables). */
function ggufName(hf: string): string | null {
  for (const [g, h] of Object.entries(GGUF_TOP_NAMES)) if (h === hf) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (!m) return null;
  for (const [g, h] of Object.entries(GGUF_LAYER_NAMES)) if (h === m[2]) return `blk.${m[1]}.${g}`;
  return null;
}

/** convert_hf_to_gguf's permutation of q/k rows: HF row h·D + i·D/2 + j goes to h·D + 2j + i. */
export function permuteRopeRows(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const D = rows / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < D / 2; j++) out.set(w.subarray((h * D + i * (D / 2) + j) * cols, (h * D + i * (D / 2) + j + 1) * cols), (h * D + 2 * j + i) * cols);
  return out;
}

function tokenizerMeta(tok: HfBackedTokenizer, cfg: JsonObject, template: string | null, meta: Map<string, GgufMeta>): void {
  const json = tok.json;
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[]; byte_fallback?: boolean } | undefined;
  if (!model || model.type !== "BPE" || !model.vocab) throw new ModelLoadError(`the tokenizer is ${model?.type ?? "unknown"}; convert writes BPE tokenizers only`, "bad_json");
  const tokens: string[] = [];
  for (const [t, i] of Object.entries(model.vocab)) tokens[i] = t;
  const added = (json.added_tokens as { id: number; content: string; special?: boolean }[] | undefined) ?? [];
  for (const a of added) tokens[a.id] = a.content;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) tokens[i] = `[PAD${i}]`;
  const special = new Set(added.filter((a) => a.special).map((a) => a.id));
  const userDefined = new Set(added.filter((a) => !a.special).map((a) => a.id));
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(" ") : String(m)));
  const spm = model.byte_fallback === true;
  const unkId = typeof (model as { unk_token?: unknown }).unk_token === "string" ? model.vocab[(model as { unk_token: string }).unk_token] : undefined;
  const types = tokens.map((t, i) =>
    i === unkId ? TOKEN_TYPE.unknown : special.has(i) ? TOKEN_TYPE.control : userDefined.has(i) ? TOKEN_TYPE.userDefined
      : spm && /^<0x[0-9A-F]{2}>$/.test(t) ? TOKEN_TYPE.byte : TOKEN_TYPE.normal);
  meta.set("tokenizer.ggml.model", { type: "string", value: spm ? "llama" : "gpt2" });
  if (!spm) {
    const pre = JSON.stringify(json.pre_tokenizer ?? null);
    // Llama 3's split regex starts with its case-insensitive contractions
    meta.set("tokenizer.ggml.pre", { type: "string", value: pre.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") ? "llama-bpe" : "default" });
  }
  meta.set("tokenizer.ggml.tokens", { type: "strings", value: tokens });
  // SentencePiece BPE scores: earlier ids merge first (as a SentencePiece BPE model scores them)
  meta.set("tokenizer.ggml.scores", { type: "f32s", value: tokens.map((_, i) => (types[i] === TOKEN_TYPE.normal ? -i : 0)) });
  meta.set("tokenizer.ggml.token_type", { type: "i32s", value: types });
  meta.set("tokenizer.ggml.merges", { type: "strings", value: merges });
  const id = (k: string): number | null => {
    const v = tok.config[k];
    const s = typeof v === "string" ? v : v && typeof v === "object" ? (v as { content?: string }).content : undefined;
    return s === undefined ? null : (model.vocab![s] ?? added.find((a) => a.content === s)?.id ?? null);
  };
  const put = (key: string, v: number | null): void => {
    if (v !== null) meta.set(key, { type: "u32", value: v });
  };
  put("tokenizer.ggml.bos_token_id", id("bos_token") ?? (typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : null));
  put("tokenizer.ggml.eos_token_id", id("eos_token") ?? (typeof cfg.eos_token_id === "number" ? cfg.eos_token_id : null));
  put("tokenizer.ggml.unknown_token_id", unkId ?? null);
  put("tokenizer.ggml.padding_token_id", id("pad_token"));
  if (typeof tok.config.add_bos_token === "boolean") meta.set("tokenizer.ggml.add_bos_token", { type: "bool", value: tok.config.add_bos_token });
  if (typeof tok.config.add_eos_token === "boolean") meta.set("tokenizer.ggml.add_eos_token", { type: "bool", value: tok.config.add_eos_token });
  if (spm) {
    const norm = JSON.stringify(json.normalizer ?? null);
    meta.set("tokenizer.ggml.add_space_prefix", { type: "bool", value: norm.includes('"Prepend"') });
  }
  if (template !== null) meta.set("tokenizer.chat_template", { type: "string", value: template });
}

function modelMeta(c: ModelConfig, name: string, type: GgufOutType, meta: Map<string, GgufMeta>): void {
  if (c.qkNorm || c.oBias || c.mlpBias || c.layerWindows.some((w) => w !== 0))
    throw new ModelLoadError(`${c.architecture} with q/k norms, o/MLP biases or sliding windows is not a llama GGUF; convert writes the Llama family only`, "unsupported_architecture");
  const u = (k: string, v: number): void => void meta.set(k, { type: "u32", value: v });
  meta.set("general.architecture", { type: "string", value: "llama" });
  meta.set("general.name", { type: "string", value: name });
  u("general.file_type", FILE_TYPE[type]);
  if (isBlockDType(type)) u("general.quantization_version", 2);
  u("llama.context_length", c.maxPositions);
  u("llama.embedding_length", c.hiddenSize);
  u("llama.block_count", c.numLayers);
  u("llama.feed_forward_length", c.intermediateSize);
  u("llama.rope.dimension_count", c.headDim);
  u("llama.attention.head_count", c.numHeads);
  u("llama.attention.head_count_kv", c.numKvHeads);
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    u("llama.attention.key_length", c.headDim);
    u("llama.attention.value_length", c.headDim);
  }
  meta.set("llama.attention.layer_norm_rms_epsilon", { type: "f32", value: c.rmsNormEps });
  meta.set("llama.rope.freq_base", { type: "f32", value: c.ropeTheta });
  u("llama.vocab_size", c.vocabSize);
  if (c.ropeScaling?.type === "linear") {
    meta.set("llama.rope.scaling.type", { type: "string", value: "linear" });
    meta.set("llama.rope.scaling.factor", { type: "f32", value: c.ropeScaling.factor });
  }
}

export interface ConvertSummary {
  tensors: number;
  /** linear weights kept in the source type: rows not whole blocks of the chosen type */
  kept: string[];
  bytes: number;
}

export async function convertToGguf(o: ConvertOptions): Promise<ConvertSummary> {
  const { config, tokenizer, chatTemplate } = inspectCheckpoint(o.model);
  const meta = new Map<string, GgufMeta>();
  modelMeta(config, basename(o.model), o.type, meta);
  tokenizerMeta(tokenizer, tokenizer.config, chatTemplate.isDefault ? null : chatTemplate.source, meta);
  const stored = readCheckpointTensors(o.model);
  const ops = native().ops("cpu");
  const fds = new Map<string, number>();
  const summary: ConvertSummary = { tensors: 0, kept: [], bytes: 0 };
  const order = (t: StoredTensor): number => {
    const c = canonicalName(t.name) ?? "";
    const m = /^L(\d+)\./.exec(c);
    return c === "embed" ? -3 : c === "final_norm" ? -2 : c === "lm_head" ? -1 : m ? Number(m[1]) : 1e9;
  };
  const sources: TensorSource[] = [];
  // llama 3 rope scaling: the per-frequency divisors llama.cpp reads as rope_freqs
  if (config.ropeScaling?.type === "llama3") {
    const plain = ropeInvFreq({ ...config, ropeScaling: null }).invFreq, scaled = ropeInvFreq(config).invFreq;
    const f = Float32Array.from(plain, (v, i) => v / scaled[i]!);
    sources.push({ name: "rope_freqs.weight", dtype: "f32", shape: [f.length], write: (s) => s(new Uint8Array(f.buffer)) });
  }
  const headInType = o.quantizeHead === true && isBlockDType(o.type);
  const tensors: { t: StoredTensor; head: boolean }[] = [...stored].sort((a, b) => order(a) - order(b)).map((t) => ({ t, head: false }));
  if (headInType && config.tieWordEmbeddings) {
    // the tied head as its own tensor, right after output_norm (where an untied lm_head sorts)
    const embed = tensors.find((e) => canonicalName(e.t.name) === "embed");
    const at = tensors.findIndex((e) => order(e.t) > -2);
    if (embed) tensors.splice(at < 0 ? tensors.length : at, 0, { t: embed.t, head: true });
  }
  for (const { t, head } of tensors) {
    if (isBlockDType(t.dtype)) throw new ModelLoadError(`${t.file}: "${t.name}" is already ${t.dtype}; convert an f32/bf16/f16 checkpoint`, "bad_safetensors");
    const canon = head ? "lm_head" : canonicalName(t.name);
    if (canon === null || (canon === "lm_head" && config.tieWordEmbeddings && !head)) continue;
    const name = head ? "output.weight" : ggufName(t.name);
    if (name === null) throw new ModelLoadError(`${t.file}: tensor "${t.name}" has no llama GGUF name`, "unexpected_tensor");
    const linear = (LINEAR.test(canon) || (headInType && canon === "lm_head")) && t.shape.length === 2;
    let dtype: StorageDType;
    if (isBlockDType(o.type)) {
      const fits = linear && t.shape[1]! % BLOCK_ELEMS[o.type] === 0;
      if (linear && !fits) summary.kept.push(t.name);
      dtype = fits ? o.type : t.shape.length === 1 ? "f32" : t.dtype;
    } else dtype = t.shape.length === 1 ? "f32" : o.type; // norms f32 whatever the type, as llama.cpp keeps them
    const heads = /\.q$/.test(canon) ? config.numHeads : /\.k$/.test(canon) ? config.numKvHeads : 0;
    const n = t.shape.reduce((a, b) => a * b, 1);
    summary.tensors++;
    summary.bytes += isBlockDType(dtype) ? blockBytes(dtype, n) : n * (dtype === "f32" ? 4 : 2);
    sources.push({
      name,
      dtype,
      shape: [...t.shape],
      write: async (sink) => {
        const raw = readBytes(fds, t);
        if (dtype === t.dtype && heads === 0) return sink(raw);
        let w = toF32(t, raw);
        if (heads > 0) w = permuteRopeRows(w, t.shape[0]!, t.shape[1]!, heads);
        if (dtype === "f32") return sink(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
        if (isBlockDType(dtype)) {
          const blocks = new Uint8Array(blockBytes(dtype, n));
          ops.fromF32(blocks, w, dtype);
          return sink(blocks);
        }
        const half = Uint16Array.from(w, dtype === "bf16" ? toBf16 : toF16);
        return sink(new Uint8Array(half.buffer));
      },
    });
  }
  try {
    await writeGguf(o.out, meta, sources, o.onProgress);
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return summary;
}
