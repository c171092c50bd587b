// Batched multi-adapter LoRA (cpu/lora.cc, cuda/lora.cu; Punica's BGMV): the op on the CPU
// and on the emulated device against a float64 reference (random rows→adapter maps,
// different ranks, rows with no adapter, a negative scale as the merged adapter's undo, A
// read through a row stride as a tensor-parallel rank reads its column shard),
// and stories260K serving one batch that mixes three adapters and the base — with and
// without one of them merged — token for token equal to each request served alone, on
// the CPU and on the emulated device (and the device equal to the CPU).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type LoraOpAdapter, type NativeModel } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { argmaxRows, emulatorSkip, useEmulator } from "./cuda-compare.js";
import { storiesDir } from "./test-model.js";

useEmulator("hc-lora-batched-");

/** out0 + Σ_t scale·(x[t]·Aᵀ)·Bᵀ of row t's adapter, in float64 */
function loraRef(out0: Float32Array, x: Float32Array, slot: Int32Array, ads: LoraOpAdapter[], T: number, N: number, K: number): Float64Array {
  const ref = Float64Array.from(out0);
  for (let t = 0; t < T; t++) {
    if (slot[t] < 0) continue;
    const { a, b, rank, scale } = ads[slot[t]];
    const lda = ads[slot[t]].lda ?? K;
    const u = new Float64Array(rank);
    for (let r = 0; r < rank; r++) for (let k = 0; k < K; k++) u[r] += x[t * K + k] * a[r * lda + k];
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let r = 0; r < rank; r++) s += u[r] * b[n * rank + r];
      ref[t * N + n] += scale * s;
    }
  }
  return ref;
}

for (const backend of ["cpu", "cuda"] as const) {
  describe(`batched LoRA op on ${backend}`, { skip: backend === "cuda" ? emulatorSkip : false }, () => {
    it("adds each row's own adapter (ranks 1..8, rows without one, a negative scale) as float64 does", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // T = 1 (decode), odd sizes, K below and above 32 lanes
      for (const [T, N, K] of [[1, 5, 3], [7, 33, 40], [33, 70, 67], [64, 16, 129]] as const) {
        const ads: LoraOpAdapter[] = [1, 4, 8, 3].map((rank, i) => ({
          a: rng.f32(rank * K),
          b: rng.f32(N * rank),
          rank,
          scale: i === 3 ? -0.75 : rng.uniform(0.1, 2),
        }));
        const slot = Int32Array.from({ length: T }, () => rng.int(ads.length + 1) - 1);
        const x = rng.f32(T * K);
        const out0 = rng.f32(T * N);
        const out = Float32Array.from(out0);
        native().ops(backend).lora(out, x, slot, ads, T, N, K);
        // fp32 sums of K then rank products of magnitude <= 1
        assertClose(out, loraRef(out0, x, slot, ads, T, N, K), 2e-6 * Math.sqrt(K) * 8, 1e-5, `lora T=${T} N=${N} K=${K} seed=${seed}`);
      }
    });

    it("reads A through its row stride (a tensor-parallel rank's column shard: lda > K) as float64 does", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [T, N, K, pad] of [[1, 6, 5, 3], [9, 33, 40, 24], [17, 20, 67, 1]] as const) {
        // each adapter's A is a slice of a wider [rank, K + pad] matrix starting at column c0
        // (the op sees a subarray from c0); its other columns are large, so reading them shows
        const ads: LoraOpAdapter[] = [2, 8, 5].map((rank, i) => {
          const lda = K + pad + i, c0 = i % 2 === 0 ? pad : 0;
          const whole = Float32Array.from({ length: rank * lda }, () => 100);
          for (let r = 0; r < rank; r++) for (let k = 0; k < K; k++) whole[r * lda + c0 + k] = rng.uniform(-1, 1);
          return { a: whole.subarray(c0, c0 + (rank - 1) * lda + K), b: rng.f32(N * rank), rank, scale: i === 2 ? -0.5 : rng.uniform(0.1, 2), lda };
        });
        const slot = Int32Array.from({ length: T }, (_, t) => (t === 0 ? 1 : rng.int(ads.length + 1) - 1));
        const x = rng.f32(T * K);
        const out0 = rng.f32(T * N);
        const out = Float32Array.from(out0);
        native().ops(backend).lora(out, x, slot, ads, T, N, K);
        assertClose(out, loraRef(out0, x, slot, ads, T, N, K), 2e-6 * Math.sqrt(K) * 8, 1e-5, `lora lda T=${T} N=${N} K=${K} seed=${seed}`);
      }
    });

    it("refuses a slot that names no adapter", () => {
      const ads: LoraOpAdapter[] = [{ a: new Float32Array(4), b: new Float32Array(4), rank: 2, scale: 1 }];
      assert.throws(() => native().ops(backend).lora(new Float32Array(2), new Float32Array(2), Int32Array.from([1]), ads, 1, 2, 2), /slot\[0\]/);
    });
  });
}

// three adapters of different ranks and targets; their B starts at zero, so random A and B
const SPECS = {
  a: { rank: 2, alpha: 4, targets: ["q", "v"] },
  b: { rank: 4, alpha: 8, targets: ["q", "k", "v", "o", "gate", "up", "down"] },
  c: { rank: 8, alpha: 8, targets: ["o", "down", "up"] },
} as const;

function addAdapters(m: NativeModel, rng: Rng): void {
  for (const [name, s] of Object.entries(SPECS)) {
    m.addAdapter(name, { lora: { rank: s.rank, alpha: s.alpha, dropout: 0, targets: [...s.targets], seed: 1 }, valueHead: false });
    for (const p of m.parameters(name))
      m.writeParameter(name, p.name, Float32Array.from({ length: p.shape.reduce((x, y) => x * y, 1) }, () => (rng.next() - 0.5) * 0.4));
  }
}

/** greedy continuations of every prompt in one batch per step (sequence i its adapters[i]) */
async function greedy(m: NativeModel, prompts: number[][], adapters: (string | null)[], steps: number, V: number, firstId: number): Promise<number[][]> {
  const seqIds = Int32Array.from(prompts.map((_, i) => firstId + i));
  const outs = prompts.map(() => [] as number[]);
  let next = prompts;
  for (let s = 0; s < steps; s++) {
    const logits = await m.forward({ seqIds, tokens: Int32Array.from(next.flat()), counts: Int32Array.from(next.map((p) => p.length)), logits: "last", adapters });
    const toks = argmaxRows(logits, V);
    toks.forEach((t, i) => outs[i].push(t));
    next = toks.map((t) => [t]);
  }
  for (const id of seqIds) m.freeSeq(id);
  return outs;
}

/** the prompt's last-position logits under `adapter` (null: the base) */
async function lastLogits(m: NativeModel, prompt: number[], adapter: string | null, seqId: number): Promise<Float32Array> {
  const logits = await m.forward({ seqIds: Int32Array.from([seqId]), tokens: Int32Array.from(prompt), counts: Int32Array.from([prompt.length]), logits: "last", adapters: [adapter] });
  m.freeSeq(seqId);
  return Float32Array.from(logits);
}

describe("a served batch mixing three adapters and the base", () => {
  const models: Partial<Record<"cpu" | "cuda", LoadedModel>> = {};
  const prompts: number[][] = [];
  let seed = 0;
  before(async () => {
    seed = freshSeed();
    for (const device of ["cpu", "cuda"] as const) {
      if (device === "cuda" && emulatorSkip) continue;
      const m = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 96, device, kvDtype: device === "cuda" ? "f32" : undefined });
      addAdapters(m.native, new Rng(seed));
      models[device] = m;
    }
    const enc = (t: string) => models.cpu!.tokenizer.encode(t, true);
    prompts.push(enc("Once upon a time, there was a big red ball"), enc("The dog ran"), enc("Lily liked to play in the park"), enc("One day"));
  });
  after(() => Object.values(models).forEach((m) => m.dispose()));

  const ADAPTERS = ["a", "b", null, "c"];
  const runs: Record<string, number[][]> = {};
  for (const device of ["cpu", "cuda"] as const)
    for (const merged of [null, "b"] as const)
      it(`on ${device}${merged ? `, adapter ${merged} merged` : ""}: each row token for token as served alone`, { skip: device === "cuda" ? emulatorSkip : false }, async () => {
        const m = models[device]!;
        const V = m.config.vocabSize;
        if (merged) m.native.mergeAdapter(merged);
        try {
          const batched = await greedy(m.native, prompts, ADAPTERS, 8, V, 1);
          const alone: number[][] = [];
          for (const [i, p] of prompts.entries()) alone.push((await greedy(m.native, [p], [ADAPTERS[i]], 8, V, 20 + i))[0]);
          assert.deepEqual(batched, alone, `seed ${seed}`);
          runs[`${device}/${merged}`] = batched;
          // every adapter changes its row's logits (else a wrong mapping could pass); logits, not
          // greedy tokens: a small random adapter may leave 8 greedy tokens of a short prompt as they were
          const base: number[][] = [];
          for (const p of prompts) base.push((await greedy(m.native, [p], [null], 8, V, 40))[0]);
          for (const i of [0, 1, 3]) {
            const own = await lastLogits(m.native, prompts[i]!, ADAPTERS[i]!, 60);
            const plain = await lastLogits(m.native, prompts[i]!, null, 61);
            const moved = own.reduce((mx, v, j) => Math.max(mx, Math.abs(v - plain[j]!)), 0);
            assert.ok(moved > 1e-2, `adapter ${ADAPTERS[i]} changed nothing: logits moved ${moved} (seed ${seed})`);
          }
          assert.deepEqual(alone[2], base[2]);
        } finally {
          if (merged) m.native.unmergeAdapter();
        }
        // the device the same as the CPU
        if (device === "cuda") assert.deepEqual(runs[`cuda/${merged}`], runs[`cpu/${merged}`], `device vs CPU (seed ${seed})`);
      });
});
