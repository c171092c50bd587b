// GGUF in and out on the real stories260K: `hybridchat convert` writes what llama.cpp's
// convert_hf_to_gguf writes (names, metadata, q/k rows in rope order), and `--model FILE.gguf`
// loads it as the HF checkpoint loads: the same tokens, logits and greedy continuation; a
// quantized GGUF holds exactly the quantized checkpoint; a malformed file is refused by name.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { readGguf } from "../engine/gguf.js";
import { ggufTokenizerFiles } from "../engine/gguf-tokenizer.js";
import { BYTE_LEVEL_CHAR, HfBackedTokenizer, loadTokenizer } from "../engine/tokenizer.js";
import { convertToGguf, type GgufOutType } from "../engine/convert-gguf.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { readCheckpointTensors } from "../engine/safetensors.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { assertClose } from "./reference/check.js";
import { matmulRef } from "./reference/ops.js";
import { int8ActivationBound } from "./reference/quant.js";
import { repoRoot, storiesDir } from "./test-model.js";
import { native } from "../native/index.js";

const cli = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const TEXT = "Once upon a time, there was a little girl named Lily. She loved the park!\nHéllo wörld 😀  — the dog's ball, 42 times.";
// stories260K's README: greedy decoding from BOS alone
const README_GREEDY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295];

let tmp: string;
let hf: LoadedModel;
let f32File: string;
before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "hc-gguf-"));
  hf = await loadModel(storiesDir, { threads: 2 });
  f32File = join(tmp, "stories260K.gguf");
  const r = spawnSync(process.execPath, [cli, "convert", "--model", storiesDir, "--out", f32File, "--type", "f32"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /47 tensors, f32/);
});
after(() => {
  hf?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

async function allLogits(m: LoadedModel, tokens: Int32Array): Promise<Float32Array> {
  const out = await m.native.forward({ seqIds: Int32Array.of(9), tokens, counts: Int32Array.of(tokens.length), logits: "all" });
  m.native.freeSeq(9);
  return out;
}

/** Greedy tokens from BOS, one forward a token (the decode path). */
async function greedy(m: LoadedModel, n: number): Promise<number[]> {
  const ids = [m.tokenizer.bosId!];
  for (let i = 1; i < n; i++) {
    const row = await m.native.forward({ seqIds: Int32Array.of(7), tokens: Int32Array.of(ids[i - 1]!), counts: Int32Array.of(1), logits: "last" });
    let best = 0;
    for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
    ids.push(best);
  }
  m.native.freeSeq(7);
  return ids;
}

test("f32 GGUF: llama.cpp's names, metadata and rope row order; loads with the same tokens, logits and greedy output", async () => {
  const g = readGguf(f32File);
  assert.equal(g.version, 3);
  const meta = (k: string): unknown => g.metadata.get(k);
  assert.equal(meta("general.architecture"), "llama");
  assert.deepEqual([meta("llama.block_count"), meta("llama.embedding_length"), meta("llama.feed_forward_length")], [5, 64, 172]);
  assert.deepEqual([meta("llama.attention.head_count"), meta("llama.attention.head_count_kv"), meta("llama.context_length")], [8, 4, 512]);
  assert.equal(meta("tokenizer.ggml.model"), "llama");
  assert.deepEqual([meta("tokenizer.ggml.bos_token_id"), meta("tokenizer.ggml.eos_token_id")], [1, 2]);
  assert.equal(meta("tokenizer.chat_template"), hf.chatTemplate.source);
  const names = g.tensors.map((t) => t.name);
  for (const n of ["token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight", "blk.4.ffn_down.weight", "blk.2.attn_output.weight"]) assert.ok(names.includes(n), n);
  assert.ok(!names.includes("output.weight"), "tied: no output tensor");
  // q rows in llama.cpp's order: convert_hf_to_gguf's reshape(heads, 2, D/2, C).swapaxes(1, 2)
  // takes a head's HF rows [0..8) (D = 8) to [0, 4, 1, 5, 2, 6, 3, 7]
  const q = g.tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
  assert.deepEqual(q.shape, [64, 64]);
  const hfQ = readCheckpointTensors(storiesDir).find((t) => t.name === "model.layers.1.self_attn.q_proj.weight")!;
  const rows = (file: string, offset: number): Float32Array => {
    const buf = Buffer.alloc(64 * 64 * 4);
    const fd = openSync(file, "r");
    readSync(fd, buf, 0, buf.length, offset);
    closeSync(fd);
    return new Float32Array(buf.buffer, buf.byteOffset, 64 * 64);
  };
  const gq = rows(f32File, q.offset), hq = rows(hfQ.file, hfQ.offset);
  const order = [0, 4, 1, 5, 2, 6, 3, 7];
  for (let h = 0; h < 8; h++)
    for (let r = 0; r < 8; r++)
      assert.deepEqual(gq.subarray((h * 8 + r) * 64, (h * 8 + r + 1) * 64), hq.subarray((h * 8 + order[r]!) * 64, (h * 8 + order[r]! + 1) * 64), `head ${h} row ${r}`);

  const m = await loadModel(f32File, { threads: 2 });
  try {
    assert.equal(m.id, "stories260K");
    assert.deepEqual(m.tokenizer.encode("Once upon a time", true), [1, 403, 407, 261, 378]);
    const tokens = Int32Array.from(hf.tokenizer.encode(TEXT, true));
    assert.deepEqual(m.tokenizer.encode(TEXT, true), Array.from(tokens));
    assert.equal(m.tokenizer.decode(Array.from(tokens), true), hf.tokenizer.decode(Array.from(tokens), true));
    assertClose(await allLogits(m, tokens), Float64Array.from(await allLogits(hf, tokens)), 1e-5, 1e-5, "f32 GGUF logits vs HF");
    const ids = await greedy(m, 30);
    assert.deepEqual(ids, README_GREEDY);
    assert.deepEqual(ids, await greedy(hf, 30));
  } finally {
    m.dispose();
  }
});

test("a SentencePiece vocabulary with scores and no merges (llama.cpp's llama2.c conversion) tokenizes as the HF tokenizer", () => {
  const g = readGguf(f32File);
  g.metadata.delete("tokenizer.ggml.merges");
  const f = ggufTokenizerFiles(g);
  const t = new HfBackedTokenizer(f.tokenizerJson, f.tokenizerConfig, f.generationConfig, null);
  assert.deepEqual(t.encode(TEXT, true), hf.tokenizer.encode(TEXT, true));
  assert.deepEqual(t.encode(TEXT, false), hf.tokenizer.encode(TEXT, false));
});

test("a byte-level BPE checkpoint converts to a gpt2 GGUF (merges, pre-tokenizer, specials) and tokenizes the same", async () => {
  const dir = join(tmp, "bytelevel");
  await initCheckpoint({ config: preset("tiny"), out: dir, seed: 2 });
  const vocab: Record<string, number> = {};
  BYTE_LEVEL_CHAR.forEach((ch, b) => (vocab[ch] = b));
  const merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "a n", "Ġa n", "Ġan d", "o n", "e r", "Ġ w", "a s", "Ġw as"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = eos;
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({
    version: "1.0",
    added_tokens: [{ id: eos, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  }));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|endoftext|>", bos_token: null, add_bos_token: false, chat_template: "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}" }));
  const file = join(tmp, "bytelevel.gguf");
  await convertToGguf({ model: dir, out: file, type: "f32" });
  const g = readGguf(file);
  assert.equal(g.metadata.get("tokenizer.ggml.model"), "gpt2");
  assert.equal(g.metadata.get("tokenizer.ggml.pre"), "default");
  assert.equal(g.metadata.get("tokenizer.ggml.eos_token_id"), eos);
  const text = "the cat was in and on the wall, 42 times — 世界 😀 <|endoftext|> and  then";
  const ref = loadTokenizer(dir), t = loadTokenizer(file);
  assert.deepEqual(t.encode(text, true), ref.encode(text, true));
  assert.ok(t.encode(text, true).includes(eos), "the special token is matched whole");
  assert.deepEqual(t.eosIds, [eos]);
  assert.equal(t.decode(ref.encode(text, false), false), text);
});

test("f16 and bf16 GGUFs: the HF load's greedy tokens, logits within the rounding", async () => {
  const tokens = Int32Array.from(hf.tokenizer.encode(TEXT, true));
  const ref = Float64Array.from(await allLogits(hf, tokens));
  for (const [type, tol] of [["f16", 0.02], ["bf16", 0.2]] as [GgufOutType, number][]) {
    const file = join(tmp, `s-${type}.gguf`);
    await convertToGguf({ model: storiesDir, out: file, type });
    assert.equal(readGguf(file).tensors.find((t) => t.name === "blk.0.ffn_up.weight")!.dtype, type);
    assert.equal(readGguf(file).tensors.find((t) => t.name === "blk.0.ffn_norm.weight")!.dtype, "f32");
    // the weights' rounding alone: an f32 KV cache ("auto" would round it too: kv-cache-dtype.test.ts)
    const m = await loadModel(file, { threads: 2, kvDtype: "f32" });
    try {
      assertClose(await allLogits(m, tokens), ref, tol, tol, `${type} GGUF logits vs HF f32`);
      assert.deepEqual((await greedy(m, 30)).slice(0, type === "f16" ? 30 : 12), README_GREEDY.slice(0, type === "f16" ? 30 : 12));
    } finally {
      m.dispose();
    }
  }
});

test("q8_0 / q4_0 / q4_k GGUFs hold the quantized checkpoint: the same logits, bit for bit", async () => {
  // stories260K's rows (64, 172) are no whole q4_k super-blocks: q4_k on a random model of hidden 256
  const wide = join(tmp, "wide");
  await initCheckpoint({ config: { ...preset("tiny"), hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2 }, out: wide, seed: 5, std: 0.08 });
  for (const [src, type] of [[storiesDir, "q8_0"], [storiesDir, "q4_0"], [wide, "q4_k"]] as [string, "q8_0" | "q4_0" | "q4_k"][]) {
    const qdir = join(tmp, `ckpt-${type}`), file = join(tmp, `s-${type}.gguf`);
    await quantizeCheckpoint({ model: src, out: qdir, type });
    const s = await convertToGguf({ model: src, out: file, type });
    assert.equal(readGguf(file).tensors.find((t) => t.name === "blk.0.attn_k.weight")!.dtype, type);
    if (src === storiesDir) assert.ok(s.kept.includes("model.layers.0.mlp.down_proj.weight"), "rows of 172 stay f32, as quantize leaves them");
    const [a, b] = [await loadModel(qdir, { threads: 2 }), await loadModel(file, { threads: 2 })];
    try {
      const tokens = Int32Array.from(a.tokenizer.encode(TEXT, true));
      assert.deepEqual(b.tokenizer.encode(TEXT, true), Array.from(tokens));
      assert.deepEqual(await allLogits(b, tokens), await allLogits(a, tokens), `${type}: GGUF vs quantized checkpoint`);
    } finally {
      a.dispose();
      b.dispose();
    }
  }
});

// --quantize-head: the tied head written as its own output tensor in the block type (llama.cpp's
// quantizer quantizes the head too), the embedding left as stored. The loaded model reads that
// tensor as an untied head, repacked at load like the layers' linears; its logits move from the
// stored head's by the head's quantization error, no more.
test("--quantize-head: the tied head as an output tensor in the block type, within its quantization error", async () => {
  const tokens = Int32Array.from(hf.tokenizer.encode(TEXT, true));
  const V = hf.config.vocabSize;
  for (const [type, blockBytes, maxKl] of [["q8_0", 34, 1e-3], ["q4_0", 18, 0.05]] as ["q8_0" | "q4_0", number, number][]) {
    const plain = join(tmp, `h0-${type}.gguf`), head = join(tmp, `h1-${type}.gguf`);
    await convertToGguf({ model: storiesDir, out: plain, type });
    const r = spawnSync(process.execPath, [cli, "convert", "--model", storiesDir, "--out", head, "--type", type, "--quantize-head"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const ts = readGguf(head).tensors, embd = ts.find((t) => t.name === "token_embd.weight")!, out = ts.find((t) => t.name === "output.weight");
    assert.ok(out, `${type}: an output tensor`);
    assert.equal(readGguf(plain).tensors.find((t) => t.name === "output.weight"), undefined, "no output tensor without the flag");
    assert.deepEqual([out.dtype, out.shape, embd.dtype], [type, embd.shape, "f32"]);
    const [a, b] = [await loadModel(plain, { threads: 2 }), await loadModel(head, { threads: 2 })];
    try {
      // the head's 512 × 64 blocks repacked at load, besides what both repack
      assert.equal(b.native.device().repackedBytes! - a.native.device().repackedBytes!, (V * 64 / 32) * blockBytes);
      const [la, lb] = [await allLogits(a, tokens), await allLogits(b, tokens)];
      let kl = 0, differ = false;
      for (let p = 0; p < tokens.length; p++) {
        const pa = softmax(la.subarray(p * V, (p + 1) * V)), pb = softmax(lb.subarray(p * V, (p + 1) * V));
        for (let i = 0; i < V; i++) kl += pa[i]! * Math.log(pa[i]! / pb[i]!);
      }
      for (let i = 0; i < la.length; i++) differ ||= la[i] !== lb[i];
      kl /= tokens.length;
      console.log(`${type} head: mean KL ${kl.toExponential(2)} over ${tokens.length} positions`);
      assert.ok(differ, `${type}: the quantized head changes the logits`);
      assert.ok(kl < maxKl, `${type}: mean KL ${kl} vs the stored head, above ${maxKl}`);
    } finally {
      a.dispose();
      b.dispose();
    }
  }
  const bad = spawnSync(process.execPath, [cli, "convert", "--model", storiesDir, "--out", join(tmp, "x.gguf"), "--type", "f16", "--quantize-head"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--quantize-head goes with a block --type \(q8_0, q4_0, q4_k\); got "f16"/);
});

function softmax(l: Float32Array): Float64Array {
  let mx = -Infinity;
  for (const v of l) mx = Math.max(mx, v);
  const p = Float64Array.from(l, (v) => Math.exp(v - mx));
  const z = p.reduce((s, v) => s + v, 0);
  return p.map((v) => v / z);
}

test("malformed GGUFs are refused with what is wrong, never a crash", async () => {
  const good = readFileSync(f32File);
  const refused = async (bytes: Buffer, re: RegExp, what: string): Promise<void> => {
    const file = join(tmp, "bad.gguf");
    writeFileSync(file, bytes);
    await assert.rejects(loadModel(file, { threads: 1 }), (e: Error & { code?: string }) => e.code === "bad_gguf" && re.test(e.message), what);
  };
  await refused(Buffer.from("GGUX and more bytes"), /does not start with "GGUF"/, "bad magic");
  await refused(good.subarray(0, 3), /does not start with "GGUF"|runs past the end/, "three bytes");
  await refused(good.subarray(0, 2000), /runs past the end of the file .*truncated\?/, "cut in the metadata");
  await refused(good.subarray(0, Math.floor(good.length * 0.6)), /tensor ".*" .* runs past the end of the file/, "cut in the data");
  const v4 = Buffer.from(good);
  v4.writeUInt32LE(4, 4);
  await refused(v4, /version 4; supported: 2 and 3/, "version");
  // the first key's length (after magic, version and the two counts) made enormous
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(1n << 60n, 24);
  await refused(huge, /more than the file could hold/, "huge string length");
  // a tensor type we do not read: output_norm.weight's type field set to Q5_K (13)
  const q6 = Buffer.from(good);
  const at = q6.indexOf(Buffer.from("output_norm.weight")) + "output_norm.weight".length;
  const dims = q6.readUInt32LE(at);
  q6.writeUInt32LE(13, at + 4 + 8 * dims);
  await refused(q6, /tensor "output_norm.weight" is Q5_K; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K/, "Q5_K");
  const bad = spawnSync(process.execPath, [cli, "convert", "--model", storiesDir, "--out", join(tmp, "x.gguf"), "--type", "q5_0"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--type must be f32, f16, bf16, q8_0, q4_0, q4_k; got "q5_0"/);
});

test("llama.cpp's own gguf-py: its GGUFWriter's file reads back; its Q8_0/Q4_0 bytes and Q4_K/Q6_K values are ours", () => {
  const dir = join(repoRoot, "test", "fixtures", "gguf");
  const f = JSON.parse(readFileSync(join(dir, "gguf-py-quants.json"), "utf8")) as Record<string, number[]>;
  const file = join(dir, "gguf-py-writer.gguf");
  const g = readGguf(file);
  const m = g.metadata;
  assert.equal(m.get("general.architecture"), "llama");
  assert.deepEqual([m.get("test.u32"), m.get("test.i32"), m.get("test.f32"), m.get("test.bool"), m.get("test.u64")], [4000000000, -7, 0.5, true, 2n ** 40n]);
  assert.equal(m.get("test.string"), "héllo ▁wörld");
  assert.deepEqual(m.get("test.strings"), ["a", "", "▁b"]);
  assert.deepEqual(m.get("test.i32s"), [1, -2, 3]);
  const bytesOf = (name: string, dtype: string): Uint8Array => {
    const t = g.tensors.find((x) => x.name === name)!;
    assert.deepEqual([t.dtype, t.shape], [dtype, [2, 256]], name);
    return new Uint8Array(readFileSync(file).subarray(t.offset, t.offset + t.byteLength));
  };
  const x = Float32Array.from(f.x!);
  assert.deepEqual(new Float32Array(bytesOf("x.f32", "f32").buffer), x);
  const ops = native().ops("cpu");
  for (const t of ["q8_0", "q4_0"] as const) {
    assert.deepEqual(bytesOf(`x.${t}`, t), Uint8Array.from(f[t]!), `${t} in the file`);
    const ours = new Uint8Array(f[t]!.length);
    ops.fromF32(ours, x, t);
    assert.deepEqual(ours, Uint8Array.from(f[t]!), `our ${t} quantizer = gguf.quants.quantize`);
  }
  for (const t of ["q4_k", "q6_k"] as const) {
    const want = f[`${t}_values`]!, blocks = Uint8Array.from(f[`${t}_blocks`]!);
    const got = new Float32Array(want.length);
    ops.toF32(got, blocks, t);
    assert.deepEqual(Array.from(got), want.map(Math.fround), `our ${t} blocks decode as gguf.quants.dequantize`);
    // and matmul reads them so (3 rows of one super-block; decode and prefill paths)
    for (const M of [1, 5, 130]) {
      const x = Float32Array.from({ length: M * 256 }, (_, i) => Math.sin(i));
      const out = new Float32Array(M * 3);
      ops.matmul(out, x, blocks, t, null, M, 3, 256);
      // q4_k: x rounded to int8 where the CPU has int8 dot products (int8ActivationBound)
      assertClose(out, matmulRef(x, want, null, M, 3, 256), 1e-6 * 16 * 4, 1e-5, `matmul ${t} M=${M}`,
        t === "q4_k" ? int8ActivationBound(x, want, M, 3, 256) : undefined);
    }
  }
});
