// The native model end to end: tiny random Llama checkpoints written to a temp dir
// (f32/bf16/f16, GQA, Qwen2 biases, Llama o/MLP biases, sliding windows, Qwen3 q/k norms,
// tied and untied heads) against the
// float64 reference in test/reference/llama.ts, plus the KV-cache semantics the
// scheduler relies on (prefill == decode, batching == alone, freeSeq, kv_full, busy,
// dispose) and greedy decoding of the real stories260K checkpoint.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type DType, type ModelSpec, type NativeModel, type TensorRef } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { llamaForwardRef } from "./reference/llama.js";
import { buildTiny, type Built, type Tiny } from "./tiny-model.js";
import { storiesDir } from "./test-model.js";

const base: Tiny = { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 8, V: 97, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };
const variants: [string, Tiny][] = [
  ["llama gqa tied f32", base],
  ["llama mha untied f32, head_dim 12 (portable attention)", { ...base, C: 36, NH: 3, NKV: 3, HD: 12, tied: false }],
  ["qwen2 biases bf16", { ...base, dtype: "bf16", bias: true, NH: 4, NKV: 1, HD: 16, C: 40 }],
  ["qwen3 qk-norm f16 untied, rope scaling", { ...base, dtype: "f16", qkNorm: true, tied: false, ropeScaling: 0.9, L: 3 }],
  // Llama attention_bias (q/k/v and o) + mlp_bias, and sliding windows shorter than the sequence
  // (5 and 3 keys over KV blocks of 4: window starts inside a block)
  ["llama attention + mlp biases, sliding windows 5 and 3", { ...base, bias: true, oBias: true, mlpBias: true, windows: [5, 3] }],
  ["qwen2-style: full layers then a window-4 layer, bf16", { ...base, dtype: "bf16", bias: true, L: 3, windows: [0, 0, 4] }],
];
// large enough that matmul and attention split their work over the pool's threads
const wide: Tiny = { ...base, C: 128, I: 256, NH: 8, NKV: 4, HD: 16, V: 300 };

const seq = (...a: number[]) => Int32Array.from(a);
type Coded = Error & { code?: string };
const hasCode = (code: string) => (e: unknown) => (e as Coded).code === code;

function tokensOf(rng: Rng, n: number, V: number): number[] {
  return Array.from({ length: n }, () => rng.int(V));
}

function rowsOf(logits: Float32Array, V: number, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * V);
  rows.forEach((r, i) => out.set(logits.subarray(r * V, r * V + V), i * V));
  return out;
}

describe("native model", () => {
  let dir = "";
  const seed = freshSeed();
  const rng = new Rng(seed);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-native-model-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const open = (b: Built, kvBlocks = 64, kvBlockSize = 4, threads = 2): NativeModel =>
    native().createModel(b.spec, b.tensors, { threads, kvBlockSize, kvBlocks });

  for (const [label, cfg] of variants) {
    it(`matches the float64 reference: ${label}`, async () => {
      const b = buildTiny(dir, label.replace(/\W+/g, "_"), cfg, rng);
      const model = open(b);
      try {
        const toks = tokensOf(rng, 11, cfg.V);
        const got = await model.forward({ seqIds: seq(5), tokens: Int32Array.from(toks), counts: seq(11), logits: "all" });
        const want = llamaForwardRef(b.ref, b.weights, toks);
        assertClose(got, want, 1e-4, 1e-3, `${label} logits seed=${seed}`);
        assert.equal(model.seqLength(5), 11);
        // and the continuation by decode steps sees the same cache
        const more = tokensOf(rng, 3, cfg.V);
        for (const [i, t] of more.entries()) {
          const row = await model.forward({ seqIds: seq(5), tokens: seq(t), counts: seq(1), logits: "last" });
          const full = llamaForwardRef(b.ref, b.weights, [...toks, ...more.slice(0, i + 1)]);
          assertClose(row, full.subarray((11 + i) * cfg.V), 1e-4, 1e-3, `${label} decode step ${i} seed=${seed}`);
        }
      } finally {
        model.dispose();
      }
    });
  }

  it("matches the float64 reference with multi-threaded kernels (40-token prefill, wider model)", async () => {
    const b = buildTiny(dir, "wide", wide, rng);
    const model = open(b, 64, 16);
    try {
      const toks = tokensOf(rng, 40, wide.V);
      const got = await model.forward({ seqIds: seq(3), tokens: Int32Array.from(toks), counts: seq(40), logits: "all" });
      assertClose(got, llamaForwardRef(b.ref, b.weights, toks), 1e-4, 1e-3, `wide logits seed=${seed}`);
    } finally {
      model.dispose();
    }
  });

  it("greedy decode at head_dim 64 (the AVX-512 decode kernel: GQA groups, split contexts) follows float64 token for token", async () => {
    // kv blocks of 16 as served; a batch of three contexts (one step a sequence), then one
    // long sequence alone (its context split over the ranks and combined)
    const cfg: Tiny = { ...base, C: 64, I: 96, NH: 4, NKV: 2, HD: 64, V: 131 };
    const tiny = buildTiny(dir, "decode_hd64", cfg, rng);
    const b = { ...tiny, spec: { ...tiny.spec, maxPositions: 512 } };
    const model = open(b, 128, 16);
    const argmax = (l: ArrayLike<number>, at: number) => {
      let best = 0;
      for (let i = 1; i < cfg.V; i++) if (l[at + i]! > l[at + best]!) best = i;
      return best;
    };
    try {
      for (const lens of [[20, 37, 5], [300]]) {
        const ids = Int32Array.from(lens, (_, i) => 100 * lens.length + i);
        const seqs = lens.map((n) => tokensOf(rng, n, cfg.V));
        let logits = await model.forward({ seqIds: ids, tokens: Int32Array.from(seqs.flat()), counts: Int32Array.from(lens), logits: "last" });
        for (let step = 0; step < 4; step++) {
          const next = seqs.map((_, r) => argmax(logits, r * cfg.V));
          next.forEach((t, r) => seqs[r]!.push(t));
          logits = await model.forward({ seqIds: ids, tokens: Int32Array.from(next), counts: Int32Array.from(lens, () => 1), logits: "last" });
          for (const [r, toks] of seqs.entries()) {
            const want = llamaForwardRef(b.ref, b.weights, toks).subarray((toks.length - 1) * cfg.V);
            const what = `lens ${lens} row ${r} step ${step} seed=${seed}`;
            assertClose(logits.subarray(r * cfg.V, (r + 1) * cfg.V), want, 1e-4, 1e-3, what);
            assert.equal(argmax(logits, r * cfg.V), argmax(want, 0), `${what}: greedy token`);
          }
        }
      }
    } finally {
      model.dispose();
    }
  });

  it("starts its worker threads reliably: create, forward at once, dispose, many times", { timeout: 60_000 }, async () => {
    const b = buildTiny(dir, "startup", wide, rng);
    const toks = Int32Array.from(tokensOf(rng, 24, wide.V));
    let first: Float32Array | undefined;
    for (let i = 0; i < 12; i++) {
      const model = open(b, 8, 16, 2);
      const lg = await model.forward({ seqIds: seq(0), tokens: toks, counts: seq(24), logits: "last" });
      model.dispose();
      if (first) assert.deepEqual(lg, first); // deterministic whatever the thread timing
      else first = lg;
    }
  });

  it("prefill logits equal token-by-token decode, across KV block boundaries", async () => {
    const b = buildTiny(dir, "prefill_decode", base, rng);
    const model = open(b, 64, 3);
    try {
      const toks = tokensOf(rng, 13, base.V);
      const all = await model.forward({ seqIds: seq(1), tokens: Int32Array.from(toks), counts: seq(13), logits: "all" });
      for (const [i, t] of toks.entries()) {
        const row = await model.forward({ seqIds: seq(2), tokens: seq(t), counts: seq(1), logits: "last" });
        assertClose(row, all.subarray(i * base.V, (i + 1) * base.V), 2e-5, 2e-4, `position ${i} seed=${seed}`);
      }
      assert.equal(model.seqLength(2), 13);
    } finally {
      model.dispose();
    }
  });

  it("sequences batched together equal each run alone", async () => {
    const b = buildTiny(dir, "batching", { ...base, NKV: 3 }, rng);
    const model = open(b, 64, 4);
    try {
      const a = tokensOf(rng, 7, base.V), c = tokensOf(rng, 5, base.V);
      // alone: ids 1 and 2
      const aAlone = await model.forward({ seqIds: seq(1), tokens: Int32Array.from(a), counts: seq(7), logits: "last" });
      const cAlone = await model.forward({ seqIds: seq(2), tokens: Int32Array.from(c), counts: seq(5), logits: "last" });
      // together: ids 11 and 12 in one step, "last" gives one row per sequence in batch order
      const both = await model.forward({ seqIds: seq(12, 11), tokens: Int32Array.from([...c, ...a]), counts: seq(5, 7), logits: "last" });
      assertClose(both.subarray(0, base.V), cAlone, 2e-5, 2e-4, `batched c seed=${seed}`);
      assertClose(both.subarray(base.V), aAlone, 2e-5, 2e-4, `batched a seed=${seed}`);
      // a batched decode step (one new token each) equals the lone decode steps
      const na = rng.int(base.V), nc = rng.int(base.V);
      const aNext = await model.forward({ seqIds: seq(1), tokens: seq(na), counts: seq(1), logits: "last" });
      const cNext = await model.forward({ seqIds: seq(2), tokens: seq(nc), counts: seq(1), logits: "last" });
      const step = await model.forward({ seqIds: seq(11, 12), tokens: seq(na, nc), counts: seq(1, 1), logits: "all" });
      assertClose(rowsOf(step, base.V, [0, 1]), Float32Array.from([...aNext, ...cNext]), 2e-5, 2e-4, `batched decode seed=${seed}`);
      // a mixed step: one sequence prefills while another decodes
      const fresh = tokensOf(rng, 6, base.V);
      const mixed = await model.forward({ seqIds: seq(11, 30), tokens: Int32Array.from([5, ...fresh]), counts: seq(1, 6), logits: "last" });
      const aLone = await model.forward({ seqIds: seq(1), tokens: seq(5), counts: seq(1), logits: "last" });
      const fLone = await model.forward({ seqIds: seq(31), tokens: Int32Array.from(fresh), counts: seq(6), logits: "last" });
      assertClose(mixed, Float32Array.from([...aLone, ...fLone]), 2e-5, 2e-4, `mixed step seed=${seed}`);
    } finally {
      model.dispose();
    }
  });

  it("sliding windows: blocks behind every layer's window go back to the pool, so a sequence outgrows it", async () => {
    const cfg: Tiny = { ...base, windows: [5, 3] };
    const b = buildTiny(dir, "window_pool", cfg, rng);
    const model = open(b, 4, 4); // 16 tokens of cache
    try {
      const toks = tokensOf(rng, 11, cfg.V);
      await model.forward({ seqIds: seq(1), tokens: Int32Array.from(toks), counts: seq(11), logits: "last" });
      // the next query (position 11) needs keys 7.. only: block 0 (positions 0-3) is free again
      assert.equal(model.kvStats().freeBlocks, 4 - 3 + 1);
      for (let i = 0; i < 20; i++) {
        const t = rng.int(cfg.V);
        toks.push(t);
        const row = await model.forward({ seqIds: seq(1), tokens: seq(t), counts: seq(1), logits: "last" });
        if (i % 6 === 5 || i === 19) {
          const want = llamaForwardRef(b.ref, b.weights, toks);
          assertClose(row, want.subarray((toks.length - 1) * cfg.V), 1e-4, 1e-3, `31-token window decode, step ${i} seed=${seed}`);
        }
      }
      assert.equal(model.seqLength(1), 31);
      // 31 tokens: 8 blocks' worth, of which the 6 wholly before position 31 - 5 + 1 are released
      assert.equal(model.kvStats().freeBlocks, 4 - (8 - 6));
      model.freeSeq(1);
      assert.equal(model.kvStats().freeBlocks, 4);
    } finally {
      model.dispose();
    }
  });

  it("freeSeq returns a sequence's blocks at once; unknown ids are ignored", async () => {
    const b = buildTiny(dir, "free", base, rng);
    const model = open(b, 10, 4);
    try {
      assert.deepEqual(model.kvStats(), { blockSize: 4, totalBlocks: 10, freeBlocks: 10, sequences: 0 });
      await model.forward({ seqIds: seq(7, 8), tokens: Int32Array.from(tokensOf(rng, 9, base.V)), counts: seq(5, 4), logits: "last" });
      assert.deepEqual(model.kvStats(), { blockSize: 4, totalBlocks: 10, freeBlocks: 7, sequences: 2 });
      model.freeSeq(7);
      assert.deepEqual(model.kvStats(), { blockSize: 4, totalBlocks: 10, freeBlocks: 9, sequences: 1 });
      assert.equal(model.seqLength(7), 0);
      assert.equal(model.seqLength(8), 4);
      model.freeSeq(12345);
      model.freeSeq(8);
      assert.deepEqual(model.kvStats(), { blockSize: 4, totalBlocks: 10, freeBlocks: 10, sequences: 0 });
      // freed while its step is in flight (a cancelled request): it stays freed
      const step = model.forward({ seqIds: seq(9), tokens: Int32Array.from(tokensOf(rng, 6, base.V)), counts: seq(6), logits: "last" });
      model.freeSeq(9);
      await step;
      assert.equal(model.seqLength(9), 0);
      assert.deepEqual(model.kvStats(), { blockSize: 4, totalBlocks: 10, freeBlocks: 10, sequences: 0 });
    } finally {
      model.dispose();
    }
  });

  it("kv_full rejects the whole step and leaves other sequences intact", async () => {
    const b = buildTiny(dir, "kvfull", base, rng);
    const model = open(b, 4, 4);
    const ref = open(b, 16, 4);
    try {
      const a = tokensOf(rng, 6, base.V);
      await model.forward({ seqIds: seq(1), tokens: Int32Array.from(a), counts: seq(6), logits: "last" });
      await ref.forward({ seqIds: seq(1), tokens: Int32Array.from(a), counts: seq(6), logits: "last" });
      const before = model.kvStats();
      assert.equal(before.freeBlocks, 2);
      // seq 1 needs no new block, seq 2 needs 3: the step must fail before writing anything
      await assert.rejects(
        model.forward({ seqIds: seq(1, 2), tokens: Int32Array.from([3, ...tokensOf(rng, 9, base.V)]), counts: seq(1, 9), logits: "last" }),
        hasCode("kv_full"),
      );
      assert.deepEqual(model.kvStats(), before);
      assert.equal(model.seqLength(1), 6);
      assert.equal(model.seqLength(2), 0);
      // an invalid token is rejected without touching the cache either
      await assert.rejects(model.forward({ seqIds: seq(1), tokens: seq(base.V), counts: seq(1), logits: "last" }), hasCode("invalid_batch"));
      assert.deepEqual(model.kvStats(), before);
      // seq 1 continues exactly as in a roomy cache
      const next = tokensOf(rng, 3, base.V);
      const got = await model.forward({ seqIds: seq(1), tokens: Int32Array.from(next), counts: seq(3), logits: "all" });
      const want = await ref.forward({ seqIds: seq(1), tokens: Int32Array.from(next), counts: seq(3), logits: "all" });
      assert.deepEqual(got, want);
      assert.equal(model.seqLength(1), 9);
    } finally {
      model.dispose();
      ref.dispose();
    }
  });

  it("rejects a concurrent forward with busy, and every call after dispose with disposed", async () => {
    const b = buildTiny(dir, "lifecycle", base, rng);
    const model = open(b);
    const first = model.forward({ seqIds: seq(1), tokens: seq(1, 2, 3), counts: seq(3), logits: "all" });
    await assert.rejects(model.forward({ seqIds: seq(2), tokens: seq(1), counts: seq(1), logits: "last" }), hasCode("busy"));
    assert.equal((await first).length, 3 * base.V);
    model.dispose();
    model.dispose(); // idempotent
    await assert.rejects(model.forward({ seqIds: seq(1), tokens: seq(1), counts: seq(1), logits: "last" }), hasCode("disposed"));
    assert.throws(() => model.seqLength(1), hasCode("disposed"));
    assert.throws(() => model.kvStats(), hasCode("disposed"));
    assert.throws(() => model.freeSeq(1), hasCode("disposed"));
  });

  it("rejects bad checkpoints and batches with clear coded errors", async () => {
    const b = buildTiny(dir, "errors", base, rng);
    const withoutQ = b.tensors.filter((t) => t.name !== "L1.q");
    assert.throws(() => native().createModel(b.spec, withoutQ, { threads: 1, kvBlockSize: 4, kvBlocks: 4 }), (e: unknown) => hasCode("tensor_missing")(e) && /L1\.q/.test((e as Error).message));
    const badShape = b.tensors.map((t) => (t.name === "L0.up" ? { ...t, shape: [base.I + 1, base.C] } : t));
    assert.throws(() => native().createModel(b.spec, badShape, { threads: 1, kvBlockSize: 4, kvBlocks: 4 }), hasCode("shape_mismatch"));
    const pastEnd = b.tensors.map((t) => (t.name === "embed" ? { ...t, offset: t.offset + 10_000_000 } : t));
    assert.throws(() => native().createModel(b.spec, pastEnd, { threads: 1, kvBlockSize: 4, kvBlocks: 4 }), hasCode("tensor_out_of_file"));
    const missingFile = b.tensors.map((t) => ({ ...t, file: join(dir, "nope.safetensors") }));
    assert.throws(() => native().createModel(b.spec, missingFile, { threads: 1, kvBlockSize: 4, kvBlocks: 4 }), hasCode("file_missing"));
    const model = open(b);
    try {
      await assert.rejects(model.forward({ seqIds: seq(1, 1), tokens: seq(1, 2), counts: seq(1, 1), logits: "last" }), hasCode("invalid_batch"));
      await assert.rejects(model.forward({ seqIds: seq(1), tokens: seq(1, 2), counts: seq(1), logits: "last" }), hasCode("invalid_batch"));
      await assert.rejects(model.forward({ seqIds: seq(1), tokens: seq(), counts: seq(0), logits: "last" }), hasCode("invalid_batch"));
      await assert.rejects(model.forward({ seqIds: seq(1), tokens: new Int32Array(65), counts: seq(65), logits: "last" }), hasCode("context_full"));
      assert.equal(model.kvStats().sequences, 0);
    } finally {
      model.dispose();
    }
  });
});

// ---- the real checkpoint -----------------------------------------------------------

const modelDir = storiesDir;

/** TensorRefs for an HF Llama safetensors file (canonical engine names), read from its header. */
function hfTensors(file: string): TensorRef[] {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const sub: Record<string, string> = {
    input_layernorm: "attn_norm", post_attention_layernorm: "mlp_norm", "self_attn.q_proj": "q", "self_attn.k_proj": "k",
    "self_attn.v_proj": "v", "self_attn.o_proj": "o", "mlp.gate_proj": "gate", "mlp.up_proj": "up", "mlp.down_proj": "down",
  };
  const out: TensorRef[] = [];
  for (const [hf, t] of Object.entries(header)) {
    if (hf === "__metadata__") continue;
    const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
    const name = m ? `L${m[1]}.${sub[m[2]!]}` : hf === "model.embed_tokens.weight" ? "embed" : hf === "model.norm.weight" ? "final_norm" : hf;
    out.push({ name, file, offset: 8 + n + t.data_offsets[0], dtype: t.dtype.toLowerCase() as DType, shape: t.shape });
  }
  return out;
}

describe("native model on stories260K", { skip: existsSync(join(modelDir, "model.safetensors")) ? false : `no model at ${modelDir}` }, () => {
  it("greedy decoding from BOS equals the README's reference tokens, decoded alone and batched", async () => {
    const cfg = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, number>;
    const HD = cfg.head_dim!;
    const spec: ModelSpec = {
      hiddenSize: cfg.hidden_size!, intermediateSize: cfg.intermediate_size!, numLayers: cfg.num_hidden_layers!,
      numHeads: cfg.num_attention_heads!, numKvHeads: cfg.num_key_value_heads!, headDim: HD, vocabSize: cfg.vocab_size!,
      maxPositions: cfg.max_position_embeddings!, rmsNormEps: cfg.rms_norm_eps!,
      ropeInvFreq: Float32Array.from({ length: HD / 2 }, (_, i) => 1 / cfg.rope_theta! ** ((2 * i) / HD)),
      ropeAttentionScaling: 1, attentionBias: false, qkNorm: false, tieWordEmbeddings: true,
    };
    const expected = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295];
    const model = native().createModel(spec, hfTensors(join(modelDir, "model.safetensors")), { threads: 2, kvBlockSize: 16, kvBlocks: 16 });
    const argmax = (a: Float32Array, off: number, V: number) => {
      let best = 0;
      for (let i = 1; i < V; i++) if (a[off + i]! > a[off + best]!) best = i;
      return best;
    };
    try {
      // two sequences decode side by side: 0 alone from BOS, 1 starting from a prefill of the first 4 tokens
      const got0 = [1], got1 = expected.slice(0, 4);
      let lg = await model.forward({ seqIds: seq(0, 1), tokens: Int32Array.from([1, ...got1]), counts: seq(1, 4), logits: "last" });
      while (got0.length < expected.length) {
        got0.push(argmax(lg, 0, spec.vocabSize));
        if (got1.length < expected.length) got1.push(argmax(lg, spec.vocabSize, spec.vocabSize));
        const ids = got1.length < expected.length ? seq(0, 1) : seq(0);
        const toks = got1.length < expected.length ? seq(got0.at(-1)!, got1.at(-1)!) : seq(got0.at(-1)!);
        if (got0.length < expected.length) lg = await model.forward({ seqIds: ids, tokens: toks, counts: ids.length === 2 ? seq(1, 1) : seq(1), logits: "last" });
      }
      assert.deepEqual(got0, expected);
      assert.deepEqual(got1, expected);
    } finally {
      model.dispose();
    }
  });
});
