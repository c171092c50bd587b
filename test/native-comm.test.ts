// The Communicator's in-process thread ranks against a serial reference on random buffers
// (comm-cases.ts: every collective, N = 1..4 ranks, sizes not divisible by N and smaller
// than N, f32 and bf16), its contract, and whether NCCL loads.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type CommOp } from "../native/index.js";
import { collectiveCases, type Dt } from "./comm-cases.js";

collectiveCases("thread communicator", "threads", [1, 2, 3, 4]);

const run = (op: CommOp, dt: Dt, bufs: (Float32Array | Uint16Array)[], opts?: { root?: number; inPlace?: boolean }) =>
  native().commRun(op, dt, bufs, opts);

function expectCode(f: () => unknown, code: string): void {
  assert.throws(f, (e: unknown) => (e as { code?: string }).code === code);
}

describe("thread communicator, contract", () => {
  it("barrier returns on every rank and leaves buffers alone", () => {
    const bufs = [Float32Array.of(1, 2), Float32Array.of(3, 4), Float32Array.of(5, 6)];
    assert.deepEqual(run("barrier", "f32", bufs), bufs);
  });

  it("refuses mismatched lengths, other dtypes, unknown ops, a root outside the group and zero ranks", () => {
    expectCode(() => run("allReduceSum", "f32", [new Float32Array(3), new Float32Array(4)]), "invalid_argument");
    expectCode(() => native().commRun("allReduceSum", "f16" as Dt, [new Uint16Array(2)]), "bad_dtype");
    expectCode(() => native().commRun("sum" as CommOp, "f32", [new Float32Array(2)]), "invalid_argument");
    expectCode(() => run("broadcast", "f32", [new Float32Array(2), new Float32Array(2)], { root: 2 }), "invalid_argument");
    expectCode(() => run("allReduceSum", "f32", []), "invalid_argument");
    // a Float32Array where bf16 bit patterns are expected
    expectCode(() => run("allGather", "bf16", [new Float32Array(2)]), "invalid_argument");
  });

  it("reports whether NCCL could be dlopened, and why not", () => {
    const s = native().ncclStatus();
    assert.equal(typeof s.loaded, "boolean");
    if (s.loaded) {
      assert.ok(s.version > 0);
      assert.equal(s.error, null);
    } else {
      assert.equal(s.version, 0);
      // every place searched is named, the Python wheel's folder included
      assert.match(s.error ?? "", /libnccl\.so\.2/);
      assert.match(s.error ?? "", /nvidia\/nccl\/lib/);
    }
  });
});

// NCCL itself: whether it loaded decides which of these run; a skipped one says why. Its
// collectives run on device buffers (commRun's "nccl" backend): nccl-emu.test.ts runs them
// on emulated devices through the stand-in libnccl.
describe("NCCL", () => {
  const s = native().ncclStatus();
  const unavailable = s.loaded ? false : `NCCL is not available here: ${s.error}`;

  it("where NCCL did not load, calling into it is a coded error carrying the reason", { skip: s.loaded ? "NCCL loaded" : false }, () => {
    assert.throws(() => native().ncclUniqueId(), (e: Error & { code?: string }) => e.code === "nccl_unavailable" && e.message.includes(s.error!));
  });

  it("where NCCL loaded, it answers a real call: ncclGetUniqueId gives fresh 128-byte ids", { skip: unavailable }, () => {
    const a = native().ncclUniqueId();
    const b = native().ncclUniqueId();
    assert.equal(a.length, 128);
    assert.ok(a.some((x) => x !== 0), "an all-zero id");
    assert.ok(!Buffer.from(a).equals(Buffer.from(b)), "two ids alike: not made by NCCL");
  });
});
