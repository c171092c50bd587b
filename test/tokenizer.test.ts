import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokenizer } from "../engine/tokenizer.js";
import type { Tokenizer } from "../engine/types.js";
import { storiesDir } from "./test-model.js";

const tok = loadTokenizer(storiesDir);

// README facts
const GREEDY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295];
const GREEDY_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the par";

/** Runs the detokenizer over `gen` after `prompt`; returns every chunk. */
function stream(t: Tokenizer, prompt: number[], gen: number[]): string[] {
  const d = t.detokenizer(prompt);
  const out = gen.map((id) => d.push(id));
  out.push(d.flush());
  return out;
}

test("encode: README fact, with and without BOS", () => {
  assert.deepEqual(tok.encode("Once upon a time", true), [1, 403, 407, 261, 378]);
  assert.deepEqual(tok.encode("Once upon a time", false), [403, 407, 261, 378]);
  assert.equal(tok.bosId, 1);
  assert.deepEqual(tok.eosIds, [2]);
  assert.equal(tok.vocabSize, 512);
});

test("decode: README greedy ids, specials skipped, first space stripped", () => {
  assert.equal(tok.decode(GREEDY, true), GREEDY_TEXT);
  // as HF tokenizers: Strip acts on the fused string, which starts with "<s>" here
  assert.equal(tok.decode(GREEDY, false), "<s> " + GREEDY_TEXT);
  assert.equal(tok.decode([], true), "");
});

test("detokenizer from BOS alone starts with 'Once' (no leading space)", () => {
  const chunks = stream(tok, [1], GREEDY.slice(1));
  assert.equal(chunks[0], "Once");
  assert.equal(chunks.join(""), GREEDY_TEXT);
});

test("detokenizer after 'Once upon a time' continues with ', there was'", () => {
  const chunks = stream(tok, GREEDY.slice(0, 5), GREEDY.slice(5));
  assert.equal(chunks[0], ",");
  assert.equal(chunks[1], " there");
  assert.equal(chunks.join(""), GREEDY_TEXT.slice("Once upon a time".length));
});

test("detokenizer never splits a UTF-8 character (byte-fallback emoji, CJK, accents)", () => {
  const text = "Hi 😀 there, 世界! é ☃ 𝄞 done";
  const ids = tok.encode(text, false);
  // the text really goes through byte-fallback tokens
  assert.ok(ids.some((id) => id >= 3 && id <= 258), "expected byte-fallback tokens");
  for (const prompt of [[1], tok.encode("Once upon a time", true), tok.encode("日本", true)]) {
    const chunks = stream(tok, prompt, ids);
    for (const c of chunks) {
      assert.ok(!c.includes("\uFFFD"), `chunk ${JSON.stringify(c)} holds a replacement character`);
      assert.ok(!/[\uD800-\uDBFF]$/.test(c) && !/^[\uDC00-\uDFFF]/.test(c), `chunk ${JSON.stringify(c)} splits a surrogate pair`);
    }
    // some pushes had to wait for the rest of a character
    assert.ok(chunks.slice(0, -1).some((c) => c === ""), "expected held-back chunks");
    const expected = tok.decode([...prompt, ...ids], true).slice(tok.decode(prompt, true).length);
    assert.equal(chunks.join(""), expected);
  }
});

test("detokenizer: specials in the stream add nothing; flush releases an unfinished character", () => {
  assert.deepEqual(stream(tok, [1], [403, 2, 407]).join(""), "Once upon");
  // <0xE2> alone is the start of a 3-byte character: held back, then flushed as U+FFFD
  const chunks = stream(tok, [1, 403], [229]);
  assert.equal(chunks[0], "");
  assert.equal(chunks[1], "\uFFFD");
  assert.equal(chunks.join(""), tok.decode([1, 403, 229], true).slice("Once".length));
});

test("long generations, invalid byte runs included, stay equal to the full decode", () => {
  const gen: number[] = [];
  for (let i = 0; i < 400; i++) gen.push(3 + ((i * 37) % 509));
  for (const prompt of [[1, 403], [1]]) {
    const expected = tok.decode([...prompt, ...gen], true).slice(tok.decode(prompt, true).length);
    assert.equal(stream(tok, prompt, gen).join(""), expected);
  }
});

test("tokenBytes / tokenText / isSpecial", () => {
  assert.deepEqual(Array.from(tok.tokenBytes(378)), Array.from(Buffer.from(" time")));
  assert.deepEqual(Array.from(tok.tokenBytes(229)), [0xe2]);
  assert.equal(tok.tokenText(229), "\uFFFD");
  assert.equal(tok.tokenText(432), ",");
  assert.equal(tok.tokenText(2), "</s>");
  assert.ok(tok.isSpecial(1) && tok.isSpecial(2) && tok.isSpecial(0));
  assert.ok(!tok.isSpecial(403));
  // bytes of a whole byte-fallback emoji reassemble into it
  const ids = tok.encode("😀", false).filter((id) => id !== 410);
  assert.equal(Buffer.concat(ids.map((id) => Buffer.from(tok.tokenBytes(id)))).toString("utf8"), "😀");
});

test("tokenizer_config add_bos_token and generation_config eos lists are honoured", () => {
  const d = mkdtempSync(join(tmpdir(), "hc-tok-"));
  cpSync(storiesDir, d, { recursive: true });
  const cfgPath = join(d, "tokenizer_config.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, add_bos_token: false }));
  writeFileSync(join(d, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 13] }));
  const t = loadTokenizer(d);
  assert.deepEqual(t.encode("Once upon a time", true), [403, 407, 261, 378]);
  assert.deepEqual([...t.eosIds].sort((a, b) => a - b), [2, 13]);
  rmSync(d, { recursive: true, force: true });
});

test("byte-level BPE vocabularies (Qwen, Llama 3): bytes, text and streaming", async () => {
  const { HfBackedTokenizer } = await import("../engine/tokenizer.js");
  // GPT-2's byte -> char table, written out here independently of the engine
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) chars[b] = printable(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));
  vocab["\u0120t"] = 256; // "Ġt" = " t"
  vocab["<|endoftext|>"] = 257;
  const tj = {
    version: "1.0",
    added_tokens: [{ id: 257, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: ["\u0120 t"] },
  };
  const t = new HfBackedTokenizer(tj, { eos_token: "<|endoftext|>", clean_up_tokenization_spaces: false }, { eos_token_id: [257] }, null);
  assert.deepEqual(t.eosIds, [257]);
  assert.equal(t.bosId, null);
  assert.deepEqual(Array.from(t.tokenBytes(256)), [0x20, 0x74]);
  assert.deepEqual(Array.from(t.tokenBytes(0xe4)), [0xe4]);
  assert.equal(t.tokenText(256), " t");
  const text = "a test 世界 😀";
  const ids = t.encode(text, true);
  assert.ok(ids.includes(256));
  assert.equal(t.decode(ids, true), text);
  const chunks = stream(t, [], ids);
  assert.equal(chunks.join(""), text);
  assert.ok(chunks.every((c) => !c.includes("\uFFFD")));
  assert.ok(chunks.includes(""), "multi-byte characters must be held back until complete");
});
