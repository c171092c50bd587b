// The device GEMM's two paths on the emulated device (native/tools/cuda-emu): cuBLASLt
// (its stand-in, built beside the library by build.sh and found by the library's own
// search, native/src/cuda/cublaslt.cu) and the library's own tiled GEMM, the fallback
// when no libcublasLt loads. This process disables cuBLASLt (HYBRIDCHAT_CUBLASLT_LIB=none,
// read once per process) so the builtin GEMM keeps its 1e-4 agreement with the CPU on
// bf16/f16 weights (through cuBLASLt those take rounded activations: cuda-engine.test.ts);
// child processes check that the search finds the stand-in, and that a missing library
// is reported, at `serve --device cuda` start-up too, with every path searched.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../native/index.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { buildEmulator } from "./cuda-compare.js";
import { repoRoot, storiesDir } from "./test-model.js";

const gxx = spawnSync("g++", ["--version"]).status === 0;
const skip = process.env.HYBRIDCHAT_CUDA_LIB ? "a given CUDA library: this file checks the emulator's" : gxx ? false : "g++ absent: cannot build the emulated device";
const dir = mkdtempSync(join(tmpdir(), "hc-cuda-cublas-"));
const lib = join(dir, "libhybridchat_cuda_emu.so");
// the same library alone in a folder: no cuBLASLt beside it
const lone = join(dir, "alone", "libhybridchat_cuda_emu.so");

before(() => {
  if (skip) return;
  buildEmulator(lib);
  mkdirSync(join(dir, "alone"));
  copyFileSync(lib, lone);
  process.env.HYBRIDCHAT_CUDA_LIB = lib;
  process.env.HYBRIDCHAT_EMU_DEVICES = "1";
  process.env.HYBRIDCHAT_CUBLASLT_LIB = "none";
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** cudaStatus() of a child process given `env` */
function childStatus(env: NodeJS.ProcessEnv): ReturnType<ReturnType<typeof native>["cudaStatus"]> {
  const code = `import(${JSON.stringify(join(repoRoot, "dist", "native", "index.js"))}).then((m) => console.log(JSON.stringify(m.native().cudaStatus())))`;
  const r = spawnSync(process.execPath, ["-e", code], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}
// a child's environment with no CUDA toolkit or loader path that could hold a real cuBLASLt
function bareEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HYBRIDCHAT_EMU_DEVICES: "1" };
  for (const k of ["HYBRIDCHAT_CUBLASLT_LIB", "CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV"]) delete env[k];
  return { ...env, ...extra };
}

describe("the device GEMM: cuBLASLt found, missing, or refused", { skip }, () => {
  it("the search finds the stand-in beside the library; HYBRIDCHAT_CUBLASLT_LIB names one file", () => {
    const s = childStatus(bareEnv({ HYBRIDCHAT_CUDA_LIB: lib }));
    assert.equal(s.gemm, "cublaslt");
    assert.equal(s.cublasLt.path, join(dir, "libcublasLt.so.12"));
    assert.deepEqual(s.cublasLt.searched.slice(0, 2), [join(dir, "libcublasLt.so.13"), join(dir, "libcublasLt.so.12")], "beside the library first, CUDA 13 then 12");
    const named = childStatus(bareEnv({ HYBRIDCHAT_CUDA_LIB: lone, HYBRIDCHAT_CUBLASLT_LIB: join(dir, "libcublasLt.so.12") }));
    assert.deepEqual({ gemm: named.gemm, searched: named.cublasLt.searched }, { gemm: "cublaslt", searched: [join(dir, "libcublasLt.so.12")] });
  });

  it("missing: the builtin GEMM serves, and the report names every path searched", (t) => {
    const s = childStatus(bareEnv({ HYBRIDCHAT_CUDA_LIB: lone, CUDA_HOME: join(dir, "toolkit") }));
    if (s.gemm === "cublaslt") return t.skip(`this machine has a cuBLASLt: ${s.cublasLt.path}`);
    assert.equal(s.gemm, "builtin");
    assert.match(s.cublasLt.error ?? "", /cuBLASLt \(libcublasLt\.so\.13\/\.12\) was not found/);
    const searched = s.cublasLt.searched;
    for (const p of [
      join(dir, "alone", "libcublasLt.so.13"), // beside the library
      join(dir, "toolkit", "lib64", "libcublasLt.so.12"), // $CUDA_HOME
      join(dir, "toolkit", "targets", "x86_64-linux", "lib", "libcublasLt.so.12"),
      "libcublasLt.so.13", // the loader's search: LD_LIBRARY_PATH, ld.so.cache
      "libcublasLt.so.12",
    ])
      assert.ok(searched.includes(p), `${p} not in ${searched.join(", ")}`);
    assert.ok(searched.some((p) => p.includes("/usr/local/cuda")), "the toolkit's usual place");
    assert.ok(searched.some((p) => /python3.*\/(site|dist)-packages\/nvidia\/cublas\/lib\/libcublasLt\.so\.12$/.test(p)), "the nvidia-cublas wheels");
    // serve --device cuda starts with the builtin GEMM and says so, naming the paths
    const cli = join(repoRoot, "dist", "cli", "main.js");
    const r = spawnSync(process.execPath, [cli, "serve", "--model", storiesDir, "--no-store", "--port", "0", "--device", "cuda", "--host", "256.0.0.1"], {
      env: bareEnv({ HYBRIDCHAT_CUDA_LIB: lone, CUDA_HOME: join(dir, "toolkit") }),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.match(r.stderr, /--device cuda: WARNING: GEMMs run on the built-in fp32 kernel/);
    assert.ok(r.stderr.includes(join(dir, "toolkit", "lib64", "libcublasLt.so.12")), r.stderr);
  });

  it("this process: HYBRIDCHAT_CUBLASLT_LIB=none refuses it by name", () => {
    const s = native().cudaStatus();
    assert.deepEqual({ gemm: s.gemm, error: s.cublasLt.error, searched: s.cublasLt.searched }, { gemm: "builtin", error: "cuBLASLt disabled by HYBRIDCHAT_CUBLASLT_LIB=none", searched: [] });
  });

  const variants: [string, Tiny][] = [
    ["gqa bf16, q/k/v biases", { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 8, V: 97, dtype: "bf16", bias: true, qkNorm: false, tied: true, ropeScaling: 1 }],
    ["f16 untied, q/k norms", { C: 40, I: 64, L: 2, NH: 2, NKV: 1, HD: 40, V: 61, dtype: "f16", bias: false, qkNorm: true, tied: false, ropeScaling: 0.9 }],
  ];
  for (const [name, t] of variants)
    it(`the builtin GEMM on random ${name}: every logit within 1e-4 of the CPU's (fp32 activations)`, async () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", t, rng);
      const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32 };
      const a = native().createModel(b.spec, b.tensors, { ...opts, device: "cpu" });
      const c = native().createModel(b.spec, b.tensors, { ...opts, device: "cuda" });
      try {
        const prompt = Array.from({ length: 9 }, () => rng.int(t.V));
        const batch = { seqIds: Int32Array.from([1]), tokens: Int32Array.from(prompt), counts: Int32Array.from([9]), logits: "all" as const };
        const x = await c.forward(batch), ref = await a.forward(batch);
        let worst = -Infinity;
        for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - ref[i]) - 1e-4 - 1e-4 * Math.abs(ref[i]));
        assert.ok(worst <= 0, `logits differ by ${worst} beyond 1e-4 (seed ${seed})`);
      } finally {
        a.dispose();
        c.dispose();
      }
    });
});
