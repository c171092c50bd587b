// The serving attention over a paged KV pool (ops.pagedAttention) on the CPU and on the
// emulated CUDA device, against a float64 reference on random inputs: packed batches of
// sequences of different lengths (prefix-cached context included: queries start past
// position 0), GQA ratios 1..8, sliding windows, head dims 8..256, f32, bf16 and f16
// pools (f16 on the CPU only), contexts over many blocks: each 16-bit pool against the
// float64 reference fed the same rounded K/V, so the kernels' widening is exact. On the device a step with more queries than sequences runs
// the flash prefill kernel; a decode step (one query per sequence) the split-K kernel,
// checked at every split count 1..n (the combine) and at the device's own pick; and the
// split inside the cuda engine, against the CPU engine's logits.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type KvDtype, type NativeOps } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { bf16ToNumber, f16ToNumber, numberToBf16, numberToF16 } from "./reference/dtype.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { emulatorSkip, excess, useEmulator } from "./cuda-compare.js";
import { buildTiny } from "./tiny-model.js";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";

const built = native().backends();
const dir = useEmulator("hc-paged-attn-");

interface Case {
  lens: number[]; // queries of each sequence this step
  past: number[]; // keys each sequence already holds (a prefix cache, earlier steps)
  NH: number;
  NKV: number;
  HD: number;
  bs: number; // block size
  window: number;
}

interface Batch {
  q: Float32Array;
  k: Float64Array; // the pool as the kernels read it (rounded to the pool's type)
  v: Float64Array;
  tables: Int32Array;
  seqOf: Int32Array;
  npos: Int32Array;
  maxBlocks: number;
  T: number;
}

// A random pool whose blocks are handed out in a shuffled order (tables are not identity).
function makeBatch(c: Case, rng: Rng, dt: KvDtype): Batch {
  const nseq = c.lens.length;
  const total = c.lens.map((l, s) => l + c.past[s]!);
  const maxBlocks = Math.max(...total.map((n) => Math.ceil(n / c.bs)));
  const blocks = nseq * maxBlocks + 2;
  const ids = Array.from({ length: blocks }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const tables = Int32Array.from({ length: nseq * maxBlocks }, (_, i) => ids[i]!);
  const round = (x: number): number =>
    dt === "bf16" ? bf16ToNumber(numberToBf16(x)) : dt === "f16" ? f16ToNumber(numberToF16(x)) : Math.fround(x);
  const n = blocks * c.NKV * c.bs * c.HD;
  const k = Float64Array.from(rng.f32(n, -2, 2), round), v = Float64Array.from(rng.f32(n), round);
  const T = c.lens.reduce((a, b) => a + b, 0);
  const seqOf = new Int32Array(T), npos = new Int32Array(T);
  for (let s = 0, t = 0; s < nseq; s++)
    for (let i = 0; i < c.lens[s]!; i++, t++) (seqOf[t] = s), (npos[t] = c.past[s]! + i + 1);
  return { q: rng.f32(T * c.NH * c.HD, -2, 2), k, v, tables, seqOf, npos, maxBlocks, T };
}

function pagedRef(c: Case, b: Batch): Float64Array {
  const { NH, NKV, HD, bs, window } = c;
  const out = new Float64Array(b.T * NH * HD);
  const at = (s: number, j: number, g: number): number =>
    ((b.tables[s * b.maxBlocks + Math.floor(j / bs)]! * NKV + g) * bs + (j % bs)) * HD;
  for (let t = 0; t < b.T; t++) {
    const n = b.npos[t]!, first = window > 0 ? Math.max(0, n - window) : 0, s = b.seqOf[t]!;
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / (NH / NKV));
      const sc: number[] = [];
      for (let j = first; j < n; j++) {
        let d0 = 0;
        for (let d = 0; d < HD; d++) d0 += b.q[(t * NH + h) * HD + d]! * b.k[at(s, j, g) + d]!;
        sc.push(d0 / Math.sqrt(HD));
      }
      const m = Math.max(...sc), p = sc.map((x) => Math.exp(x - m)), sum = p.reduce((a, x) => a + x, 0);
      for (let d = 0; d < HD; d++) {
        let acc = 0;
        for (let j = first; j < n; j++) acc += p[j - first]! * b.v[at(s, j, g) + d]!;
        out[(t * NH + h) * HD + d] = acc / sum;
      }
    }
  }
  return out;
}

function run(ops: NativeOps, c: Case, b: Batch, dt: KvDtype, splits: number): Float32Array {
  const out = new Float32Array(b.T * c.NH * c.HD).fill(NaN);
  const pool = (x: Float64Array) =>
    dt === "bf16" ? Uint16Array.from(x, numberToBf16) : dt === "f16" ? Uint16Array.from(x, numberToF16) : Float32Array.from(x);
  ops.pagedAttention(out, b.q, pool(b.k), pool(b.v), dt, b.tables, c.lens.length, b.maxBlocks, b.seqOf, b.npos,
    b.T, c.NH, c.NKV, c.HD, c.bs, c.window, splits);
  return out;
}

const name = (c: Case) => `lens=${c.lens} past=${c.past} NH=${c.NH} NKV=${c.NKV} HD=${c.HD} bs=${c.bs} window=${c.window}`;

// prefill and mixed steps (more queries than sequences): the device's flash kernel, tiles
// of 16 (token, head) rows over several sequences, partial tiles, HD > 128 on the row kernel
const PREFILL: Case[] = [
  { lens: [11, 3], past: [0, 0], NH: 6, NKV: 2, HD: 8, bs: 4, window: 0 },
  { lens: [5, 1, 9, 1], past: [7, 30, 0, 3], NH: 8, NKV: 1, HD: 16, bs: 4, window: 0 },
  { lens: [20], past: [45], NH: 4, NKV: 4, HD: 40, bs: 8, window: 0 },
  { lens: [13, 6], past: [4, 0], NH: 4, NKV: 2, HD: 64, bs: 16, window: 5 },
  { lens: [33], past: [0], NH: 2, NKV: 1, HD: 128, bs: 16, window: 0 },
  { lens: [3, 4], past: [2, 40], NH: 16, NKV: 2, HD: 12, bs: 5, window: 9 },
  { lens: [6], past: [3], NH: 2, NKV: 1, HD: 256, bs: 4, window: 0 },
];
// decode steps: one query per sequence over contexts of many blocks
const DECODE: Case[] = [
  { lens: [1], past: [200], NH: 4, NKV: 1, HD: 32, bs: 8, window: 0 },
  { lens: [1, 1, 1], past: [90, 3, 0], NH: 6, NKV: 3, HD: 24, bs: 4, window: 0 },
  { lens: [1, 1], past: [130, 61], NH: 2, NKV: 2, HD: 64, bs: 16, window: 37 },
  { lens: [1], past: [70], NH: 2, NKV: 1, HD: 160, bs: 8, window: 0 },
  // past 256 keys a row: the device's own pick splits (3 ways on the emulator's 4 SMs)
  { lens: [1], past: [700], NH: 2, NKV: 1, HD: 8, bs: 16, window: 0 },
  // the CPU's AVX-512 decode kernel: GQA groups over shuffled blocks of 16 and of 5 keys
  // (steps cut by block ends), a batch of contexts, one long context split over the ranks
  { lens: [1, 1, 1, 1], past: [150, 20, 77, 0], NH: 8, NKV: 2, HD: 64, bs: 16, window: 0 },
  { lens: [1, 1], past: [99, 64], NH: 4, NKV: 1, HD: 32, bs: 5, window: 0 },
  { lens: [1], past: [1200], NH: 4, NKV: 2, HD: 128, bs: 16, window: 0 },
  { lens: [1, 1], past: [300, 40], NH: 6, NKV: 6, HD: 64, bs: 16, window: 50 },
  // short contexts of one sequence, a 110M layer's heads (12 × 64) and a GQA group of 3: from
  // ≈ 16 positions the step's kv heads are shared by the ranks (below, rank 0 runs them all)
  { lens: [1], past: [15], NH: 12, NKV: 12, HD: 64, bs: 16, window: 0 },
  { lens: [1], past: [40], NH: 12, NKV: 12, HD: 64, bs: 16, window: 0 },
  { lens: [1], past: [127], NH: 12, NKV: 4, HD: 64, bs: 16, window: 0 },
];

for (const backend of ["cpu", "cuda"] as const) {
  const skip = !built.includes(backend) ? `backend ${backend} is not built into this addon`
    : backend === "cuda" && !process.env.HYBRIDCHAT_CUDA_LIB && emulatorSkip ? emulatorSkip : false;
  describe(`paged attention on ${backend}`, { skip }, () => {
    const ops = (): NativeOps => native().ops(backend);
    const pools: KvDtype[] = backend === "cuda" ? ["f32", "bf16"] : ["f32", "bf16", "f16"];

    it("prefill over packed variable-length sequences (causal, GQA, windows, prefix context) matches float64", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const dt of pools)
        for (const c of PREFILL) {
          const b = makeBatch(c, rng, dt);
          const ref = pagedRef(c, b);
          assertClose(run(ops(), c, b, dt, 1), ref, 2e-6, 1e-5, `prefill ${name(c)} pool=${dt} seed=${seed}`);
        }
    });

    it("decode at every split count (and the device's pick) matches float64", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const dt of pools)
        for (const c of DECODE) {
          const b = makeBatch(c, rng, dt);
          const ref = pagedRef(c, b);
          for (const splits of backend === "cuda" ? [0, 1, 2, 3, 7, 32] : [0])
            assertClose(run(ops(), c, b, dt, splits), ref, 2e-6, 1e-5, `decode ${name(c)} splits=${splits} pool=${dt} seed=${seed}`);
        }
    });

    it("the mask is real: a key past npos or before the window changes nothing, one inside does", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [lens, splits] of [[[9, 1], 1], [[1, 1], 1], [[1, 1], 3]] as [number[], number][]) {
        const c: Case = { lens, past: [6, 40], NH: 4, NKV: 2, HD: 16, bs: 4, window: 12 };
        const b = makeBatch(c, rng, "f32");
        const base = run(ops(), c, b, "f32", splits);
        const at = (s: number, j: number) => ((b.tables[s * b.maxBlocks + Math.floor(j / c.bs)]! * c.NKV) * c.bs + (j % c.bs)) * c.HD;
        // sequence 1 (the decode row, npos 41, window 12: keys 29..40) outside and inside its range
        const poke = (j: number): Float32Array => {
          const k = b.k.slice(), v = b.v.slice();
          for (let d = 0; d < c.HD; d++) (k[at(1, j) + d] = 5), (v[at(1, j) + d] = 9);
          return run(ops(), c, { ...b, k, v }, "f32", splits);
        };
        const row = (x: Float32Array) => x.slice(lens[0]! * c.NH * c.HD);
        assert.deepEqual(row(poke(28)), row(base), `a key before the window was read (lens ${lens}, splits ${splits}, seed ${seed})`);
        assert.notDeepEqual(row(poke(29)), row(base), `the window's first key was not read (lens ${lens}, splits ${splits}, seed ${seed})`);
        assert.notDeepEqual(row(poke(40)), row(base), `the query's own key was not read (lens ${lens}, splits ${splits}, seed ${seed})`);
      }
    });

    it("bad indices are refused by name", () => {
      const c: Case = { lens: [2], past: [0], NH: 2, NKV: 1, HD: 8, bs: 4, window: 0 };
      const b = makeBatch(c, new Rng(1), "f32");
      const bad = { ...b, tables: Int32Array.from(b.tables, () => 99) };
      assert.throws(() => run(ops(), c, bad, "f32", 1), /block id outside the pool/);
      assert.throws(() => run(ops(), c, { ...b, npos: Int32Array.from([1, 9]) }, "f32", 1), /npos in/);
      if (backend === "cuda") assert.throws(() => run(ops(), c, b, "f16", 1), /an f16 KV pool runs on the CPU only/);
    });
  });
}

// every CPU kernel (portable row, AVX2 row, AVX-512 tiles and decode) over each pool type
describeEachKernelVariant(import.meta.url, "paged attention");

// The split decode inside the engine (CudaExec: the split count, the partial rows in its
// scratch): a random GQA model's decode logits after a prompt over many KV blocks, at forced
// split counts, within 1e-4 of the CPU engine's (an f32 pool).
describe("split-K decode in the cuda engine", { skip: !built.includes("cuda") ? "backend cuda is not built into this addon" : process.env.HYBRIDCHAT_CUDA_LIB ? false : emulatorSkip }, () => {
  it("decode logits at splits 1, 2 and 5 equal the CPU engine's within 1e-4", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    const t = { C: 32, I: 48, L: 2, NH: 4, NKV: 2, HD: 8, V: 53, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 } as const;
    const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", t, rng);
    const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 64 };
    const cpu = native().createModel(b.spec, b.tensors, { ...opts, device: "cpu" });
    const cuda = native().createModel(b.spec, b.tensors, { ...opts, device: "cuda", kvDtype: "f32" });
    const before = process.env.HYBRIDCHAT_ATTN_SPLITS;
    try {
      const prompts = [Array.from({ length: 45 }, () => rng.int(t.V)), Array.from({ length: 9 }, () => rng.int(t.V))];
      const step = async (m: typeof cpu, tokens: number[], counts: number[]) =>
        m.forward({ seqIds: Int32Array.from([1, 2]), tokens: Int32Array.from(tokens), counts: Int32Array.from(counts), logits: "all" });
      await step(cpu, prompts.flat(), [45, 9]);
      await step(cuda, prompts.flat(), [45, 9]);
      for (const splits of ["1", "2", "5"]) {
        process.env.HYBRIDCHAT_ATTN_SPLITS = splits;
        const next = [rng.int(t.V), rng.int(t.V)];
        const ref = await step(cpu, next, [1, 1]), got = await step(cuda, next, [1, 1]);
        assert.ok(excess(got, ref) <= 0, `splits ${splits}: logits differ by ${excess(got, ref)} beyond 1e-4 (seed ${seed})`);
      }
    } finally {
      if (before === undefined) delete process.env.HYBRIDCHAT_ATTN_SPLITS;
      else process.env.HYBRIDCHAT_ATTN_SPLITS = before;
      cpu.dispose();
      cuda.dispose();
    }
  });
});
