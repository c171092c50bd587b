// The pretrained model `hybridchat serve` runs when no --model is given: the TinyStories 260K
// Llama (karpathy/tinyllamas, MIT; about 1 MB), so the first run answers in English. It is
// data, never part of the git history: `npm pack` copies it into the package's gitignored
// models/stories260K (scripts/bundle-default-model.mjs, with its licence and source note), and
// a checkout finds it beside the repository in ../shared/models/stories260K.
// Only when none is found does `serve` fall back to the random built-in (engine/builtin.ts).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const DEFAULT_MODEL_NAME = "stories260K";
export const DEFAULT_MODEL_ENV = "HYBRIDCHAT_DEFAULT_MODEL";

/** the package root, from dist/engine/ or engine/ alike */
export const PACKAGE_ROOT = resolve(fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../.." : "..", import.meta.url)));

export interface DefaultModel {
  /** the checkpoint directory; null when none was found */
  dir: string | null;
  /** every place looked, in order (for the start-up message) */
  looked: string[];
}

/**
 * Where the pretrained default is: $HYBRIDCHAT_DEFAULT_MODEL when set (then only there: a
 * set variable is a decision, and pointing it at nothing forces the random built-in), else
 * ../shared/models/stories260K beside the package root, else models/stories260K inside it.
 */
export function findDefaultModel(env: NodeJS.ProcessEnv = process.env, root: string = PACKAGE_ROOT): DefaultModel {
  const set = env[DEFAULT_MODEL_ENV];
  const looked = set !== undefined && set !== ""
    ? [resolve(set)]
    : [resolve(root, "..", "shared", "models", DEFAULT_MODEL_NAME), join(root, "models", DEFAULT_MODEL_NAME)];
  return { dir: looked.find((d) => existsSync(join(d, "config.json")) && existsSync(join(d, "model.safetensors"))) ?? null, looked };
}
