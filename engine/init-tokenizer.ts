// A small Llama-2-style tokenizer (SentencePiece BPE with byte fallback, like stories260K's)
// for randomly initialised checkpoints: any vocabulary size >= 354, deterministic.
import type { JsonObject } from "./json-file.js";
import { DEFAULT_CHAT_TEMPLATE } from "./chat-template.js";

const SPECIALS = ["<unk>", "<s>", "</s>"];
const SPACE = "\u2581";

// Frequent English words: enough merges that plain text encodes to fewer tokens than letters.
const WORDS = (
  "the and to of a in is it you that he was for on are with as his they be at one have this from or had by " +
  "not word but what some we can out other were all there when up use your how said an each she which do their " +
  "time if will way about many then them write would like so these her long make thing see him two has look more " +
  "day could go come did number sound no most people my over know water than call first who may down side been now " +
  "find any new work part take get place made live where after back little only round man year came show every good " +
  "me give our under name very through just form sentence great think say help low line differ turn cause much mean " +
  "before move right boy old too same tell does set three want air well also play small end put home read hand port " +
  "large spell add even land here must big high such follow act why ask men change went light kind off need house " +
  "picture try us again animal point mother world near build self earth father once upon happy friend park ball"
).split(" ");

/** tokenizer.json for a vocabulary of exactly `vocabSize` ids. */
export function buildTokenizerJson(vocabSize: number): JsonObject {
  const vocab = new Map<string, number>();
  const merges: string[] = [];
  const add = (tok: string): void => {
    if (!vocab.has(tok) && vocab.size < vocabSize) vocab.set(tok, vocab.size);
  };
  SPECIALS.forEach(add);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  add(SPACE);
  for (let c = 33; c <= 126; c++) add(String.fromCharCode(c));
  if (vocab.size < 354) throw new Error(`the generated tokenizer needs a vocabulary of at least 354 tokens, got ${vocabSize}`);
  const merge = (a: string, b: string): void => {
    if (vocab.size >= vocabSize || vocab.has(a + b) || !vocab.has(a) || !vocab.has(b)) return;
    merges.push(`${a} ${b}`);
    add(a + b);
  };
  // each word grows left to right: "▁" + "t" -> "▁t", "▁t" + "h" -> "▁th", ...
  for (const w of WORDS) {
    let cur = SPACE;
    for (const ch of w) {
      merge(cur, ch);
      cur += ch;
    }
  }
  // fill the rest with two-piece merges of what exists, in a fixed order
  const letters = "etaoinshrdlucmfwypvbgkjqxz".split("");
  for (let round = 0; vocab.size < vocabSize && round < 8; round++) {
    const pieces = [...vocab.keys()].slice(3 + 256);
    for (const p of pieces) {
      for (const l of letters) merge(p, l);
      if (vocab.size >= vocabSize) break;
    }
  }
  // past what merges can reach (never for sane sizes), pad with unused added tokens
  for (let i = 0; vocab.size < vocabSize; i++) add(`<unused${i}>`);

  const addedTokens = SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  for (const [tok, id] of vocab) {
    if (tok.startsWith("<unused")) addedTokens.push({ id, content: tok, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: SPACE },
        { type: "Replace", pattern: { String: " " }, content: SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
}

export function buildTokenizerConfig(maxPositions: number): JsonObject {
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: null,
    model_max_length: maxPositions,
    tokenizer_class: "LlamaTokenizer",
    clean_up_tokenization_spaces: false,
    chat_template: DEFAULT_CHAT_TEMPLATE,
  };
}
