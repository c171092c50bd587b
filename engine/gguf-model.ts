// A Llama-family GGUF as the engine loads a checkpoint: an HF-shaped config.json built from the
// `llama.*` metadata, the tensors under their HF names (memory-mapped in place by the native
// side; q and k carry the head count of llama.cpp's rope row order, undone at load), and the
// tokenizer of `tokenizer.ggml.*` as a @huggingface/tokenizers JSON (gguf-tokenizer.ts).
import { openSync, readSync, closeSync } from "node:fs";
import type { JsonObject } from "./json-file.js";
import { ModelLoadError } from "./load-errors.js";
import { readGguf, type GgufFile, type GgufValue } from "./gguf.js";
import type { StoredTensor } from "./safetensors.js";

/** GGUF tensor names (after "blk.N.") → HF's (after "model.layers.N."); convert-hf-to-gguf.ts writes the reverse. */
export const GGUF_LAYER_NAMES: Record<string, string> = {
  "attn_norm.weight": "input_layernorm.weight",
  "attn_q.weight": "self_attn.q_proj.weight",
  "attn_k.weight": "self_attn.k_proj.weight",
  "attn_v.weight": "self_attn.v_proj.weight",
  "attn_output.weight": "self_attn.o_proj.weight",
  "attn_q.bias": "self_attn.q_proj.bias",
  "attn_k.bias": "self_attn.k_proj.bias",
  "attn_v.bias": "self_attn.v_proj.bias",
  "attn_output.bias": "self_attn.o_proj.bias",
  "ffn_norm.weight": "post_attention_layernorm.weight",
  "ffn_gate.weight": "mlp.gate_proj.weight",
  "ffn_up.weight": "mlp.up_proj.weight",
  "ffn_down.weight": "mlp.down_proj.weight",
};
export const GGUF_TOP_NAMES: Record<string, string> = {
  "token_embd.weight": "model.embed_tokens.weight",
  "output_norm.weight": "model.norm.weight",
  "output.weight": "lm_head.weight",
};
/** llama3-style rope: per-frequency divisors of the inverse frequencies (llama.cpp's rope_freqs). */
const ROPE_FREQS = "rope_freqs.weight";

export function hfNameOfGguf(name: string): string | null {
  if (name in GGUF_TOP_NAMES) return GGUF_TOP_NAMES[name]!;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const part = m ? GGUF_LAYER_NAMES[m[2]!] : undefined;
  return m && part ? `model.layers.${m[1]}.${part}` : null;
}

export interface GgufModel {
  gguf: GgufFile;
  /** the config.json transformers would have for it */
  config: JsonObject;
  /** HF names; q/k rows in llama.cpp's rope order (`ropeHeads`) */
  tensors: StoredTensor[];
  /** rope_freqs (llama 3.1 rope scaling): the inverse frequencies are divided by these */
  ropeFreqFactors: Float32Array | null;
}

const num = (g: GgufFile, key: string): number | undefined => {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v === "bigint") return Number(v);
  if (typeof v !== "number") throw new ModelLoadError(`${g.file}: metadata "${key}" is ${typeof v}, expected a number`, "bad_gguf");
  return v;
};
export const metaString = (g: GgufFile, key: string): string | undefined => {
  const v = g.metadata.get(key);
  if (v !== undefined && typeof v !== "string") throw new ModelLoadError(`${g.file}: metadata "${key}" is not a string`, "bad_gguf");
  return v;
};
export const metaArray = (g: GgufFile, key: string): GgufValue[] | undefined => {
  const v = g.metadata.get(key);
  if (v !== undefined && !Array.isArray(v)) throw new ModelLoadError(`${g.file}: metadata "${key}" is not an array`, "bad_gguf");
  return v;
};

function need(g: GgufFile, key: string): number {
  const v = num(g, key);
  if (v === undefined) throw new ModelLoadError(`${g.file}: metadata "${key}" is missing`, "bad_gguf");
  return v;
}

/** Reads a GGUF and maps it to what the checkpoint loader takes. */
export function readGgufModel(file: string): GgufModel {
  const g = readGguf(file);
  const arch = metaString(g, "general.architecture");
  if (arch !== "llama")
    throw new ModelLoadError(`${file}: general.architecture is ${JSON.stringify(arch ?? null)}; supported: llama`, "unsupported_architecture");
  const a = (k: string): string => `${arch}.${k}`;
  const hidden = need(g, a("embedding_length"));
  const heads = need(g, a("attention.head_count"));
  const kvHeads = num(g, a("attention.head_count_kv")) ?? heads;
  const tokens = metaArray(g, "tokenizer.ggml.tokens");
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const embd = byName.get("token_embd.weight");
  const vocab = num(g, a("vocab_size")) ?? tokens?.length ?? embd?.shape[0];
  if (vocab === undefined) throw new ModelLoadError(`${file}: no ${a("vocab_size")}, tokenizer.ggml.tokens or token_embd`, "bad_gguf");
  const headDim = num(g, a("attention.key_length")) ?? num(g, a("rope.dimension_count")) ?? hidden / heads;
  const config: JsonObject = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: hidden,
    intermediate_size: need(g, a("feed_forward_length")),
    num_hidden_layers: need(g, a("block_count")),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: vocab,
    max_position_embeddings: need(g, a("context_length")),
    rms_norm_eps: num(g, a("attention.layer_norm_rms_epsilon")) ?? 1e-5,
    rope_theta: num(g, a("rope.freq_base")) ?? 10000,
    hidden_act: "silu",
    tie_word_embeddings: !byName.has("output.weight"),
    attention_bias: byName.has("blk.0.attn_q.bias"),
    mlp_bias: false,
  };
  const scaling = metaString(g, a("rope.scaling.type"));
  if (scaling === "linear") config.rope_scaling = { rope_type: "linear", factor: need(g, a("rope.scaling.factor")) };
  else if (scaling !== undefined && scaling !== "none")
    throw new ModelLoadError(`${file}: ${a("rope.scaling.type")} "${scaling}" is not supported (linear or none)`, "bad_gguf");
  const bos = num(g, "tokenizer.ggml.bos_token_id"), eos = num(g, "tokenizer.ggml.eos_token_id");
  if (bos !== undefined) config.bos_token_id = bos;
  if (eos !== undefined) config.eos_token_id = eos;

  const tensors: StoredTensor[] = [];
  let ropeFreqFactors: Float32Array | null = null;
  for (const t of g.tensors) {
    if (t.name === ROPE_FREQS) {
      ropeFreqFactors = readF32(file, t.offset, t.byteLength, t.dtype, t.name);
      continue;
    }
    const hf = hfNameOfGguf(t.name);
    if (hf === null) throw new ModelLoadError(`${file}: unexpected tensor "${t.name}" in a llama GGUF`, "unexpected_tensor");
    const ref: StoredTensor = { name: hf, file, offset: t.offset, byteLength: t.byteLength, dtype: t.dtype, shape: t.shape };
    if (/attn_q\.weight$/.test(t.name)) ref.ropeHeads = heads;
    if (/attn_k\.weight$/.test(t.name)) ref.ropeHeads = kvHeads;
    tensors.push(ref);
  }
  if (ropeFreqFactors && ropeFreqFactors.length !== headDim / 2)
    throw new ModelLoadError(`${file}: ${ROPE_FREQS} has ${ropeFreqFactors.length} values, expected head_dim/2 = ${headDim / 2}`, "shape_mismatch");
  return { gguf: g, config, tensors, ropeFreqFactors };
}

function readF32(file: string, offset: number, bytes: number, dtype: string, name: string): Float32Array {
  if (dtype !== "f32") throw new ModelLoadError(`${file}: ${name} is ${dtype}, expected f32`, "bad_gguf");
  const buf = Buffer.alloc(bytes);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buf, 0, bytes, offset);
  } finally {
    closeSync(fd);
  }
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + bytes));
}

export function isGgufPath(path: string): boolean {
  return path.toLowerCase().endsWith(".gguf");
}
