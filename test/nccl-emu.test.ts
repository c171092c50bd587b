// NCCL behind the Communicator, checked without a GPU: the host emulator's CUDA library and
// its stand-in libnccl.so.2 (native/tools/cuda-emu/build.sh writes it beside the library,
// where the addon's NCCL loader looks first) with four emulated devices; commRun's "nccl"
// backend puts rank r's buffers on device r and runs each collective through the same
// dlopened NCCL entry points (comm_nccl.cc) that real GPUs use — every collective, 1..4
// ranks, counts smaller than the rank count and not divisible by it, f32 and bf16.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../native/index.js";
import { collectiveCases } from "./comm-cases.js";
import { repoRoot } from "./test-model.js";

const gxx = spawnSync("g++", ["--version"]).status === 0;
const dir = mkdtempSync(join(tmpdir(), "hc-nccl-emu-"));
const lib = join(dir, "libhybridchat_cuda_emu.so");

before(() => {
  assert.ok(gxx, "g++ is needed to build the emulated device");
  const b = spawnSync("sh", [join(repoRoot, "native", "tools", "cuda-emu", "build.sh"), lib], { encoding: "utf8" });
  assert.equal(b.status, 0, b.stderr);
  // read once per process, on the first CUDA / NCCL call (none has happened yet in this file)
  process.env.HYBRIDCHAT_CUDA_LIB = lib;
  process.env.HYBRIDCHAT_EMU_DEVICES = "4";
  delete process.env.HYBRIDCHAT_NCCL_LIB;
});
after(() => rmSync(dir, { recursive: true, force: true }));

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
