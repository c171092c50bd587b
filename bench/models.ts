// Benchmark checkpoints are made by the project itself (random init: weights don't change speed),
// once, into bench/out/models, and reused by later runs.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { DType } from "../native/index.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { progressBar } from "./progress.js";

export async function benchCheckpoint(outRoot: string, presetName: string, dtype: DType): Promise<string> {
  const dir = join(outRoot, "models", `${presetName}-${dtype}`);
  if (existsSync(join(dir, "model.safetensors")) && existsSync(join(dir, "tokenizer.json"))) return dir;
  const bar = progressBar(`init ${presetName} ${dtype}`);
  await initCheckpoint({ config: preset(presetName), out: dir, dtype, seed: 0, onProgress: bar.update });
  bar.stop();
  return dir;
}
