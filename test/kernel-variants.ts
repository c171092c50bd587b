// Runs a test file once more under each CPU kernel variant (HYBRIDCHAT_KERNELS) other
// than the one this process runs, in child processes because the variant is chosen
// once per process; variants this CPU cannot run are reported as skipped, by name.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { KERNEL_VARIANTS, native } from "../native/index.js";

export function describeEachKernelVariant(fileUrl: string, what: string): void {
  const forced = process.env.HYBRIDCHAT_KERNELS;
  describe(`${what} on every CPU kernel variant`, { skip: forced ? `already the ${forced} run` : false }, () => {
    const runnable: readonly string[] = native().kernelVariants();
    const active = native().cpuFeatures();
    for (const variant of KERNEL_VARIANTS) {
      const skip = variant === active ? "the variant this process runs"
        : runnable.includes(variant) ? false : `this CPU cannot run ${variant}`;
      it(`pass with HYBRIDCHAT_KERNELS=${variant}`, { skip }, () => {
        const env: NodeJS.ProcessEnv = { ...process.env, HYBRIDCHAT_KERNELS: variant };
        delete env.NODE_TEST_CONTEXT; // else the child reports to this runner instead of its stdout
        const r = spawnSync(process.execPath, ["--test", "--test-reporter=tap", fileURLToPath(fileUrl)], { env, encoding: "utf8" });
        assert.equal(r.status, 0, `${what} failed on ${variant}:\n${r.stdout}\n${r.stderr}`);
        assert.match(r.stdout, /# pass [1-9]/);
        assert.match(r.stdout, /# fail 0/);
        // the child really ran the variant it was asked for
        assert.doesNotMatch(r.stderr, /HYBRIDCHAT_KERNELS=.* is not runnable/);
      });
    }
  });
}
