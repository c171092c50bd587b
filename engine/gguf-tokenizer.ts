// A GGUF's tokenizer (`tokenizer.ggml.*`) as the tokenizer.json + tokenizer_config.json our
// tokenizer layer reads (@huggingface/tokenizers), built the way transformers converts the same
// vocabularies: model "llama" is SentencePiece BPE (Metaspace ▁, byte fallback; merges from the
// file, else derived from the scores as transformers' SentencePiece extractor does), model
// "gpt2" byte-level BPE with the file's merges and the pre-tokenizer `tokenizer.ggml.pre` names.
import type { JsonObject } from "./json-file.js";
import { ModelLoadError } from "./load-errors.js";
import { metaArray, metaString } from "./gguf-model.js";
import type { GgufFile } from "./gguf.js";

/** llama.cpp's llama_token_type. */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

// transformers' pre-tokenizer regexes by llama.cpp's `tokenizer.ggml.pre` name
const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const PRE_PATTERNS: Record<string, string> = { default: GPT2_PATTERN, "gpt-2": GPT2_PATTERN, gpt2: GPT2_PATTERN, "llama-bpe": LLAMA3_PATTERN, llama3: LLAMA3_PATTERN };

export interface GgufTokenizerFiles {
  tokenizerJson: JsonObject;
  tokenizerConfig: JsonObject;
  generationConfig: JsonObject;
}

/** SentencePiece merges from scores: every split of a token into two vocabulary pieces, the
 * merged token's score first (then its id, then the left piece's id). */
export function mergesFromScores(tokens: readonly string[], scores: readonly number[], types: readonly number[]): string[] {
  const id = new Map<string, number>();
  tokens.forEach((t, i) => {
    if ((types[i] ?? TOKEN_TYPE.normal) === TOKEN_TYPE.normal && !id.has(t)) id.set(t, i);
  });
  const cands: [number, number, number, string][] = [];
  for (const [t, i] of id) {
    const cps = Array.from(t);
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join(""), r = cps.slice(k).join("");
      const li = id.get(l);
      if (li !== undefined && id.has(r)) cands.push([scores[i] ?? 0, i, li, `${l} ${r}`]);
    }
  }
  cands.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
  return cands.map((c) => c[3]);
}

export function ggufTokenizerFiles(g: GgufFile): GgufTokenizerFiles {
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${g.file}: ${msg}`, "bad_gguf");
  };
  const model = metaString(g, "tokenizer.ggml.model");
  const tokens = metaArray(g, "tokenizer.ggml.tokens");
  if (model === undefined || tokens === undefined) return bad(`no tokenizer (tokenizer.ggml.model and tokenizer.ggml.tokens are required)`);
  if (!tokens.every((t): t is string => typeof t === "string")) return bad("tokenizer.ggml.tokens holds a non-string");
  const types = (metaArray(g, "tokenizer.ggml.token_type") ?? []).map(Number);
  const idOf = (key: string): number | null => {
    const v = g.metadata.get(key);
    if (v === undefined) return null;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n >= tokens.length) return bad(`${key} = ${String(v)} is not a token id`);
    return n;
  };
  const bos = idOf("tokenizer.ggml.bos_token_id"), eos = idOf("tokenizer.ggml.eos_token_id");
  const unk = idOf("tokenizer.ggml.unknown_token_id"), pad = idOf("tokenizer.ggml.padding_token_id");
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    if (!(t in vocab)) vocab[t] = i;
  });
  // control, unknown and user-defined tokens are matched whole before the model runs
  const added = tokens.flatMap((t, i) => {
    const ty = types[i] ?? TOKEN_TYPE.normal;
    if (ty !== TOKEN_TYPE.control && ty !== TOKEN_TYPE.unknown && ty !== TOKEN_TYPE.userDefined && i !== bos && i !== eos) return [];
    return [{ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: ty !== TOKEN_TYPE.userDefined }];
  });
  const fileMerges = metaArray(g, "tokenizer.ggml.merges");
  if (fileMerges && !fileMerges.every((m) => typeof m === "string")) bad("tokenizer.ggml.merges holds a non-string");
  let tokenizerJson: JsonObject;
  if (model === "llama") {
    const scores = (metaArray(g, "tokenizer.ggml.scores") ?? []).map(Number);
    const prefix = g.metadata.get("tokenizer.ggml.add_space_prefix") !== false;
    const merges = (fileMerges as string[] | undefined) ?? mergesFromScores(tokens, scores, types);
    tokenizerJson = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: {
        type: "Sequence",
        normalizers: [...(prefix ? [{ type: "Prepend", prepend: "▁" }] : []), { type: "Replace", pattern: { String: " " }, content: "▁" }],
      },
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "▁" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(prefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: "BPE", dropout: null, unk_token: unk !== null ? tokens[unk]! : null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges,
      },
    };
  } else if (model === "gpt2") {
    if (!fileMerges) return bad("tokenizer.ggml.model is gpt2 but tokenizer.ggml.merges is missing");
    const pre = metaString(g, "tokenizer.ggml.pre") ?? "default";
    const pattern = PRE_PATTERNS[pre];
    if (pattern === undefined) return bad(`tokenizer.ggml.pre "${pre}" is not supported (${Object.keys(PRE_PATTERNS).join(", ")})`);
    tokenizerJson = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: pattern }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: null,
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: false, byte_fallback: false, ignore_merges: pattern === LLAMA3_PATTERN, vocab, merges: fileMerges,
      },
    };
  } else {
    return bad(`tokenizer.ggml.model "${model}" is not supported (llama, gpt2)`);
  }
  const addBos = g.metadata.get("tokenizer.ggml.add_bos_token");
  const addEos = g.metadata.get("tokenizer.ggml.add_eos_token");
  const tokenizerConfig: JsonObject = {
    add_bos_token: typeof addBos === "boolean" ? addBos : model === "llama",
    add_eos_token: addEos === true,
    bos_token: bos !== null ? tokens[bos]! : null,
    eos_token: eos !== null ? tokens[eos]! : null,
    unk_token: unk !== null ? tokens[unk]! : null,
    pad_token: pad !== null ? tokens[pad]! : null,
  };
  const template = metaString(g, "tokenizer.chat_template");
  if (template !== undefined) tokenizerConfig.chat_template = template;
  const generationConfig: JsonObject = {};
  if (bos !== null) generationConfig.bos_token_id = bos;
  if (eos !== null) generationConfig.eos_token_id = eos;
  return { tokenizerJson, tokenizerConfig, generationConfig };
}
