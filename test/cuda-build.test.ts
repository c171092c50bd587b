// The CUDA library's build and load contract, checked on machines without a GPU too:
// where nvcc exists (native/tools/find-nvcc.sh, which binding.gyp asks as well) the
// library was built, exports every entry point of native/src/cuda/ops_cuda.h and loads;
// without a device, cudaStatus() says why instead of crashing and "cuda" is not a
// backend. Beyond the symbols: the same .cu sources, compiled for the host emulator
// (native/tools/cuda-emu), are loaded through HYBRIDCHAT_CUDA_LIB in a child process and
// every entry point is run against the CPU backend on random inputs (test/cuda-vs-cpu.ts),
// so a kernel that computes the wrong thing fails here on any machine with g++. The float64
// references stay in native-ops / native-backward, which run on "cuda" wherever backends()
// lists it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { native, type CudaStatus } from "../native/index.js";

const gxx = spawnSync("g++", ["--version"]).status === 0;

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const nvcc = spawnSync("sh", [join(root, "native", "tools", "find-nvcc.sh")], { encoding: "utf8" }).stdout.trim();
const libPath = process.env.HYBRIDCHAT_CUDA_LIB || join(root, "native", "build", "Release", "libhybridchat_cuda.so");
const header = readFileSync(join(root, "native", "src", "cuda", "ops_cuda.h"), "utf8");

/** cudaStatus() of a fresh process (the addon loads the library once per process) */
function statusWith(env: NodeJS.ProcessEnv): CudaStatus {
  const indexJs = join(root, "dist", "native", "index.js");
  const script = `import(${JSON.stringify(indexJs)}).then((m) => console.log(JSON.stringify(m.native().cudaStatus())))`;
  const r = spawnSync(process.execPath, ["-e", script], { env: { ...process.env, ...env }, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as CudaStatus;
}

describe("CUDA build", () => {
  it("the addon agrees with the build about whether the library exists", () => {
    const s = native().cudaStatus();
    if (nvcc) {
      assert.ok(existsSync(libPath), `nvcc is at ${nvcc} but ${libPath} was not built`);
      assert.equal(s.built, true);
      assert.equal(s.loaded, true, `the library was built but does not load: ${s.error}`);
    } else {
      assert.deepEqual({ built: s.built, loaded: s.loaded, devices: s.devices }, { built: false, loaded: false, devices: 0 });
      assert.match(s.error ?? "", /not built/);
    }
  });

  it("the library exports every entry point of ops_cuda.h, and the loader's list names them all", { skip: nvcc ? false : "nvcc absent: no library" }, () => {
    const declared = [...header.matchAll(/HC_CUDA_API\s[^;]*?\b(hc_cuda_\w+)\s*\(/g)].map((m) => m[1]!);
    const listed = [...(header.split("#define HC_CUDA_ENTRY_POINTS")[1] ?? "").matchAll(/X\((hc_cuda_\w+)\)/g)].map((m) => m[1]!);
    assert.ok(declared.length >= 23, `only ${declared.length} entry points declared`);
    assert.deepEqual([...listed].sort(), [...declared].sort(), "HC_CUDA_ENTRY_POINTS must list every declared entry point");
    const nm = spawnSync("nm", ["-D", "--defined-only", libPath], { encoding: "utf8" });
    assert.equal(nm.status, 0, `nm -D failed: ${nm.stderr}`);
    const exported = new Set(nm.stdout.split("\n").map((l) => l.trim().split(/\s+/)[2]).filter((x): x is string => !!x));
    for (const name of declared) assert.ok(exported.has(name), `${libPath} does not export ${name}`);
  });

  it("without a device, cudaStatus() says why and ops(\"cuda\") throws a coded error; with one, cuda is a backend", () => {
    const s = native().cudaStatus();
    const backends = native().backends();
    if (s.devices > 0) {
      assert.equal(s.error, null);
      assert.ok(backends.includes("cuda"));
      assert.deepEqual(Object.keys(native().ops("cuda")).sort(), Object.keys(native().ops("cpu")).sort());
    } else {
      assert.ok(typeof s.error === "string" && s.error.length > 0, "a missing device needs a reason");
      assert.deepEqual(backends, ["cpu"]);
      assert.throws(() => native().ops("cuda"), (e: Error & { code?: string }) =>
        e.code === "backend_unavailable" && e.message.includes(s.error!));
    }
  });

  it("HYBRIDCHAT_CUDA_LIB: a missing file is 'not built', a file that is no library is 'cannot load'", () => {
    const missing = statusWith({ HYBRIDCHAT_CUDA_LIB: join(root, "no-such-dir", "libhybridchat_cuda.so") });
    assert.equal(missing.built, false);
    assert.match(missing.error ?? "", /not built/);
    const bogus = statusWith({ HYBRIDCHAT_CUDA_LIB: join(root, "package.json") });
    assert.deepEqual({ built: bogus.built, loaded: bogus.loaded, devices: bogus.devices }, { built: true, loaded: false, devices: 0 });
    assert.match(bogus.error ?? "", /cannot load/);
  });

  it("the kernels, built for the host emulator from the same sources, compute every entry point as the CPU backend does", { skip: gxx ? false : "g++ absent: cannot build the emulation" }, () => {
    const dir = mkdtempSync(join(tmpdir(), "hc-cuda-emu-"));
    try {
      const lib = join(dir, "libhybridchat_cuda_emu.so");
      const build = spawnSync("sh", [join(root, "native", "tools", "cuda-emu", "build.sh"), lib], { encoding: "utf8" });
      assert.equal(build.status, 0, build.stderr);
      // one device, whatever the caller set (gpu-check --emulator presents two)
      const r = spawnSync(process.execPath, [join(root, "dist", "test", "cuda-vs-cpu.js")], { env: { ...process.env, HYBRIDCHAT_CUDA_LIB: lib, HYBRIDCHAT_EMU_DEVICES: "1" }, encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { seed: number; devices: number; ops: Record<string, number> };
      assert.equal(got.devices, 1, "the emulation is one device");
      // every op the backends share was run, and each stayed within its tolerance
      assert.deepEqual(Object.keys(got.ops).sort(), Object.keys(native().ops("cpu")).sort());
      for (const [op, excess] of Object.entries(got.ops)) assert.ok(excess <= 0, `${op}: cuda differs from cpu beyond tolerance by ${excess} (seed ${got.seed})`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
