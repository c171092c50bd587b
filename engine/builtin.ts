// The built-in demo model `hybridchat serve` runs without --model: the "tiny" preset from a
// fixed seed, written once into a cache directory and reused. Its weights are random.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "./init-checkpoint.js";
import { preset } from "./presets.js";

export const BUILTIN_SEED = 1234;
export const BUILTIN_PRESET = "tiny";
// bump when the init or tokenizer format changes, so stale caches are not reused
const FORMAT = 2;

const REQUIRED = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"];

/** Path of the built-in checkpoint, created if absent. `cacheRoot` defaults to the OS temp dir. */
export async function ensureBuiltinModel(cacheRoot: string = tmpdir()): Promise<string> {
  const config = preset(BUILTIN_PRESET);
  const hash = createHash("sha256").update(JSON.stringify({ config, seed: BUILTIN_SEED, FORMAT })).digest("hex").slice(0, 12);
  const dir = join(cacheRoot, `hybridchat-builtin-${hash}`);
  if (REQUIRED.every((f) => existsSync(join(dir, f)))) return dir;
  // build beside the target and rename the whole directory: a reader never sees half a model
  const tmp = `${dir}.${process.pid}.${Date.now()}.tmp`;
  await initCheckpoint({ config, out: tmp, seed: BUILTIN_SEED, marker: { builtin: true, preset: BUILTIN_PRESET } });
  try {
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    // another process won the race: use its copy
    await rm(tmp, { recursive: true, force: true });
    if (!REQUIRED.every((f) => existsSync(join(dir, f)))) throw e;
  }
  return dir;
}
