// The Tokenizer of engine/types.ts over @huggingface/tokenizers, configured the way
// transformers configures it from tokenizer.json + tokenizer_config.json + generation_config.json.
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import type { Detokenizer, Tokenizer } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { readJsonFile, readOptionalJsonFile, type JsonObject } from "./json-file.js";
import { isGgufPath, readGgufModel } from "./gguf-model.js";
import { ggufTokenizerFiles } from "./gguf-tokenizer.js";

/** Loads the tokenizer of a checkpoint directory, or of a GGUF file (its tokenizer.ggml.* metadata). */
export function loadTokenizer(dir: string): HfBackedTokenizer {
  if (isGgufPath(dir)) {
    const g = readGgufModel(dir);
    const f = ggufTokenizerFiles(g.gguf);
    return new HfBackedTokenizer(f.tokenizerJson, f.tokenizerConfig, f.generationConfig, g.config, dir);
  }
  const tokenizerJson = readJsonFile(join(dir, "tokenizer.json"));
  const tokenizerConfig = readOptionalJsonFile(join(dir, "tokenizer_config.json")) ?? {};
  const generationConfig = readOptionalJsonFile(join(dir, "generation_config.json"));
  const modelConfig = readOptionalJsonFile(join(dir, "config.json"));
  return new HfBackedTokenizer(tokenizerJson, tokenizerConfig, generationConfig, modelConfig, join(dir, "tokenizer.json"));
}

/** `bos_token` etc. in tokenizer_config.json: a string or an AddedToken-like `{content}`. */
export function specialTokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

function idList(v: unknown): number[] {
  if (typeof v === "number" && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number" && Number.isInteger(x));
  return [];
}

// GPT-2's byte <-> printable-unicode table, used by ByteLevel (Qwen, Llama 3) vocabularies.
/** byte -> the character a ByteLevel vocabulary writes it as (any byte string maps losslessly) */
export const BYTE_LEVEL_CHAR: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = [];
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
})();
const BYTE_LEVEL_DECODE: Map<string, number> = new Map(BYTE_LEVEL_CHAR.map((ch, b) => [ch, b]));

function usesDecoder(decoder: unknown, type: string): boolean {
  if (!decoder || typeof decoder !== "object") return false;
  const d = decoder as { type?: unknown; decoders?: unknown };
  if (d.type === type) return true;
  return Array.isArray(d.decoders) && d.decoders.some((x) => usesDecoder(x, type));
}

const utf8 = new TextEncoder();
const lossyUtf8 = new TextDecoder("utf-8", { fatal: false });

export class HfBackedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: readonly number[];
  /** tokenizer_config.json as read (chat_template, bos_token... for the chat template) */
  readonly config: JsonObject;
  /** tokenizer.json as read (the GGUF converter writes its vocabulary and merges) */
  readonly json: JsonObject;
  private readonly hf: HfTokenizer;
  private readonly specialIds: Set<number>;
  private readonly byteLevel: boolean;
  private readonly addBos: boolean | null;
  private readonly addEos: boolean;
  private readonly eosId: number | null;
  private readonly bytesCache = new Map<number, Uint8Array>();

  constructor(tokenizerJson: JsonObject, tokenizerConfig: JsonObject, generationConfig: JsonObject | null, modelConfig: JsonObject | null, source = "tokenizer.json") {
    try {
      this.hf = new HfTokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new ModelLoadError(`${source}: cannot build the tokenizer: ${(e as Error).message}`, "bad_json");
    }
    this.config = tokenizerConfig;
    this.json = tokenizerJson;
    this.byteLevel = usesDecoder(tokenizerJson.decoder, "ByteLevel");
    this.specialIds = new Set([...this.hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    let maxId = -1;
    for (const id of this.hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const lookup = (v: unknown): number | null => {
      const s = specialTokenString(v);
      return s === null ? null : (this.hf.token_to_id(s) ?? null);
    };
    this.bosId = lookup(tokenizerConfig.bos_token) ?? idList(generationConfig?.bos_token_id)[0] ?? idList(modelConfig?.bos_token_id)[0] ?? null;
    this.eosId = lookup(tokenizerConfig.eos_token);
    const eos = new Set<number>();
    if (this.eosId !== null) eos.add(this.eosId);
    for (const id of idList(generationConfig?.eos_token_id)) eos.add(id);
    if (!generationConfig) for (const id of idList(modelConfig?.eos_token_id)) eos.add(id);
    this.eosIds = [...eos];
    // transformers' Llama tokenizers rebuild the post-processor from these flags; where they
    // are absent, tokenizer.json's own post-processor decides.
    this.addBos = typeof tokenizerConfig.add_bos_token === "boolean" ? tokenizerConfig.add_bos_token : null;
    this.addEos = tokenizerConfig.add_eos_token === true;
  }

  #maxTokenChars = 0;

  /**
   * The most characters (UTF-16 units) one token stands for: the longest vocabulary entry or
   * added token as written in tokenizer.json. Written forms are never shorter than the text
   * they cover ("▁the" is " the", a byte-level entry has one character per byte, "<0x0A>"
   * is one byte), so a text of n characters needs at least n / maxTokenChars tokens
   * (before normalization; see server/serving/prompt-tokens.ts).
   */
  get maxTokenChars(): number {
    if (this.#maxTokenChars === 0) for (const tok of this.hf.get_vocab(true).keys()) this.#maxTokenChars = Math.max(this.#maxTokenChars, tok.length, 1);
    return this.#maxTokenChars;
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    if (!addSpecialTokens) return this.hf.encode(text, { add_special_tokens: false }).ids;
    if (this.addBos === null) return this.hf.encode(text, { add_special_tokens: true }).ids;
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    if (this.addBos && this.bosId !== null) ids.unshift(this.bosId);
    if (this.addEos && this.eosId !== null) ids.push(this.eosId);
    return ids;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    if (ids.length === 0) return "";
    return this.hf.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenBytes(id: number): Uint8Array {
    let b = this.bytesCache.get(id);
    if (!b) {
      b = this.computeTokenBytes(id);
      this.bytesCache.set(id, b);
    }
    return b;
  }

  tokenText(id: number): string {
    return lossyUtf8.decode(this.tokenBytes(id));
  }

  private computeTokenBytes(id: number): Uint8Array {
    const tok = this.hf.id_to_token(id);
    if (tok === undefined) return new Uint8Array(0);
    if (this.specialIds.has(id)) return utf8.encode(tok);
    if (this.byteLevel) {
      const out: number[] = [];
      for (const ch of tok) {
        const b = BYTE_LEVEL_DECODE.get(ch);
        if (b === undefined) out.push(...utf8.encode(ch));
        else out.push(b);
      }
      return Uint8Array.from(out);
    }
    const byteTok = /^<0x([0-9A-Fa-f]{2})>$/.exec(tok);
    if (byteTok) return Uint8Array.of(parseInt(byteTok[1], 16));
    return utf8.encode(tok.replaceAll("\u2581", " "));
  }

  detokenizer(promptIds: readonly number[]): Detokenizer {
    return new IncrementalDetokenizer(this, promptIds);
  }
}

// How many already-read tokens to re-decode as context (merging decoders such as Strip or
// byte fallback look at neighbours).
const CONTEXT_TOKENS = 6;

/**
 * Decodes a small window [prefix, end) and emits the text past [prefix, read): the window
 * decode equals the full decode's tail because both sides share the same start. Text is held
 * back while it ends in U+FFFD (an unfinished UTF-8 sequence from byte-fallback tokens).
 */
class IncrementalDetokenizer implements Detokenizer {
  private readonly ids: number[];
  private prefix: number;
  private read: number;

  constructor(
    private readonly tok: HfBackedTokenizer,
    promptIds: readonly number[],
  ) {
    this.ids = [...promptIds];
    this.read = this.ids.length;
    this.prefix = Math.max(0, this.read - CONTEXT_TOKENS);
  }

  push(tokenId: number): string {
    this.ids.push(tokenId);
    return this.emit(false);
  }

  flush(): string {
    return this.emit(true);
  }

  private emit(final: boolean): string {
    // a window whose read part holds only specials would decode to "" and hide the context a
    // decoder like Strip needs: widen it to reach a real token
    let start = this.prefix;
    while (start > 0 && !this.ids.slice(start, this.read).some((id) => !this.tok.isSpecial(id))) start--;
    const before = this.tok.decode(this.ids.slice(start, this.read), true);
    const after = this.tok.decode(this.ids.slice(start), true);
    if (!final && after.endsWith("\uFFFD")) return "";
    let common = before.length;
    if (!after.startsWith(before)) {
      // only when the prompt itself ended inside a UTF-8 character: its U+FFFD becomes a real char
      common = 0;
      while (common < before.length && common < after.length && before[common] === after[common]) common++;
    }
    const text = after.slice(common);
    if (text.length > 0 || final) this.advance();
    return text;
  }

  private advance(): void {
    this.prefix = this.read;
    this.read = this.ids.length;
  }
}
