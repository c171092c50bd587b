// NCCL behind the Communicator, checked without a GPU: the host emulator's CUDA library and
// its stand-in libnccl.so.2 (native/tools/cuda-emu/build.sh writes it beside the library,
// where the addon's NCCL loader looks first) with four emulated devices; commRun's "nccl"
// backend puts rank r's buffers on device r and runs each collective through the same
// dlopened NCCL entry points (comm_nccl.cc) that real GPUs use — every collective, 1..4
// ranks, counts smaller than the rank count and not divisible by it, f32 and bf16.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { native } from "../native/index.js";
import { collectiveCases } from "./comm-cases.js";
import { emulatedDevices } from "./cuda-compare.js";

const { dir } = emulatedDevices(4, "hc-nccl-emu-");

describe("NCCL stand-in", () => {
  it("is found beside the CUDA library in use and answers as NCCL 2.x", () => {
    const s = native().ncclStatus();
    assert.equal(s.error, null);
    assert.equal(s.loaded, true);
    assert.equal(s.path, join(dir, "libnccl.so.2"));
    assert.ok(s.version >= 20000, `version ${s.version}`);
    const a = native().ncclUniqueId(), b = native().ncclUniqueId();
    assert.ok(!Buffer.from(a).equals(Buffer.from(b)), "two unique ids alike");
  });

  it("refuses more ranks than devices, naming both", () => {
    assert.throws(() => native().commRun("allReduceSum", "f32", Array.from({ length: 5 }, () => new Float32Array(2)), { backend: "nccl" }),
      (e: Error & { code?: string }) => e.code === "backend_unavailable" && /5 ranks need 5 CUDA devices; 4 present/.test(e.message));
  });
});

collectiveCases("NCCL stand-in on emulated devices", "nccl", [1, 2, 3, 4]);
