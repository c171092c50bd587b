// The Communicator's collectives against a serial reference on random buffers, for any
// backend commRun drives: every collective, N ranks, sizes not divisible by N and smaller
// than N, f32 and bf16. Sums are reduced in rank order in fp32 (bf16 rounded once), so the
// reference is exact: a float32 serial sum in rank order, checked again against float64
// within a tolerance. Used by native-comm.test.ts (threads) and nccl-emu.test.ts (NCCL on
// emulated devices).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type CommOp, type CommRunOptions } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { bf16ToNumber, numberToBf16 } from "./reference/dtype.js";

export type Dt = "f32" | "bf16";
const SIZES = [0, 1, 2, 3, 5, 7, 64, 1001, 4099];

/** Shard contract of communicator.h: blocks of ceil(n/size), the last ones shorter or empty. */
function shard(n: number, size: number, rank: number): [number, number] {
  const block = Math.ceil(n / size);
  const begin = Math.min(block * rank, n);
  return [begin, Math.min(begin + block, n)];
}

function randomBuffers(rng: Rng, dt: Dt, ranks: number, n: number): (Float32Array | Uint16Array)[] {
  return Array.from({ length: ranks }, () => {
    const v = rng.f32(n, -4, 4);
    return dt === "f32" ? v : Uint16Array.from(v, (x) => numberToBf16(x));
  });
}

const value = (dt: Dt, b: Float32Array | Uint16Array, i: number): number => (dt === "f32" ? b[i]! : bf16ToNumber(b[i]!));

/** Serial rank-order float32 sum, stored in dt: what every rank must hold after allReduceSum. */
function sumRef(dt: Dt, bufs: (Float32Array | Uint16Array)[], n: number): Float32Array | Uint16Array {
  const acc = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let a = Math.fround(value(dt, bufs[0]!, i));
    for (let r = 1; r < bufs.length; r++) a = Math.fround(a + value(dt, bufs[r]!, i));
    acc[i] = a;
  }
  return dt === "f32" ? acc : Uint16Array.from(acc, (x) => numberToBf16(x));
}

function sum64(dt: Dt, bufs: (Float32Array | Uint16Array)[], n: number): Float64Array {
  const out = new Float64Array(n);
  for (const b of bufs) for (let i = 0; i < n; i++) out[i]! += value(dt, b, i);
  return out;
}


/** Registers the collective cases for `backend` at each rank count of `ranks`. */
export function collectiveCases(label: string, backend: CommRunOptions["backend"], ranks: number[]): void {
  const run = (op: CommOp, dt: Dt, bufs: (Float32Array | Uint16Array)[], opts?: CommRunOptions) =>
    native().commRun(op, dt, bufs, { ...opts, backend });
  const RANKS = ranks;
  for (const dt of ["f32", "bf16"] as Dt[]) {
    describe(`${label}, ${dt}`, () => {
      it("allReduceSum equals the serial rank-order sum on every rank", () => {
        const seed = freshSeed();
        const rng = new Rng(seed);
        for (const N of RANKS)
          for (const n of SIZES) {
            const bufs = randomBuffers(rng, dt, N, n);
            const out = run("allReduceSum", dt, bufs);
            const ref = sumRef(dt, bufs, n);
            const ref64 = sum64(dt, bufs, n);
            for (let r = 0; r < N; r++) {
              const what = `seed ${seed} N=${N} n=${n} rank ${r}`;
              assert.deepEqual(out[r], ref, what);
              const got = Float64Array.from({ length: n }, (_, i) => value(dt, out[r]!, i));
              assertClose(got, ref64, dt === "f32" ? 1e-5 : 0.05, dt === "f32" ? 1e-6 : 1 / 128, what + " vs float64");
            }
          }
      });

      for (const inPlace of [false, true])
        it(`reduceScatterSum leaves each rank its shard of the sum${inPlace ? " (in place)" : ""}`, () => {
          const seed = freshSeed();
          const rng = new Rng(seed);
          for (const N of RANKS)
            for (const n of SIZES) {
              const bufs = randomBuffers(rng, dt, N, n);
              const out = run("reduceScatterSum", dt, bufs, { inPlace });
              const ref = sumRef(dt, bufs, n);
              for (let r = 0; r < N; r++) {
                const [a, b] = shard(n, N, r);
                assert.deepEqual(out[r], ref.slice(a, b), `seed ${seed} N=${N} n=${n} rank ${r}`);
              }
            }
        });

      for (const inPlace of [false, true])
        it(`allGather assembles every rank's shard on every rank${inPlace ? " (in place)" : ""}`, () => {
          const seed = freshSeed();
          const rng = new Rng(seed);
          for (const N of RANKS)
            for (const n of SIZES) {
              const bufs = randomBuffers(rng, dt, N, n);
              const out = run("allGather", dt, bufs, { inPlace });
              const ref = dt === "f32" ? new Float32Array(n) : new Uint16Array(n);
              for (let r = 0; r < N; r++) {
                const [a, b] = shard(n, N, r);
                ref.set(bufs[r]!.slice(a, b), a);
              }
              for (let r = 0; r < N; r++) assert.deepEqual(out[r], ref, `seed ${seed} N=${N} n=${n} rank ${r}`);
            }
        });

      it("broadcast copies the root's buffer to every rank, for every root", () => {
        const seed = freshSeed();
        const rng = new Rng(seed);
        for (const N of RANKS)
          for (const n of SIZES)
            for (let root = 0; root < N; root++) {
              const bufs = randomBuffers(rng, dt, N, n);
              const out = run("broadcast", dt, bufs, { root });
              for (let r = 0; r < N; r++) assert.deepEqual(out[r], bufs[root], `seed ${seed} N=${N} n=${n} root ${root}`);
            }
      });
    });
  }
}
