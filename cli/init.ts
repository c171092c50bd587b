// `hybridchat init`: writes a randomly initialised HF checkpoint (for benchmarks and tests).
import { parseArgs } from "node:util";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import type { DType } from "../native/index.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset, presetNames } from "../engine/presets.js";
import { expectedShapes } from "../engine/weights.js";
import type { JsonObject } from "../engine/json-file.js";
import { intOption, UsageError } from "./errors.js";
import { INIT_HELP } from "./init.help.js";
import { Progress } from "./progress-bar.js";

const DTYPES: DType[] = ["f32", "bf16", "f16"];

function readConfig(file: string): JsonObject {
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`--config ${file}: no such file`, "init");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new UsageError(`--config ${file}: not valid JSON (${(e as Error).message})`, "init");
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new UsageError(`--config ${file}: expected a JSON object (an HF config.json)`, "init");
  return raw as JsonObject;
}

export async function initCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: "string" },
      preset: { type: "string" },
      out: { type: "string" },
      seed: { type: "string", default: "0" },
      dtype: { type: "string", default: "f32" },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(INIT_HELP);
    return;
  }
  const c = "init";
  if ((values.config === undefined) === (values.preset === undefined))
    throw new UsageError("give exactly one of --config FILE.json or --preset NAME", c);
  if (values.out === undefined) throw new UsageError("--out DIR is required (where to write the checkpoint)", c);
  const dtype = values.dtype as DType;
  if (!DTYPES.includes(dtype)) throw new UsageError(`--dtype must be one of ${DTYPES.join(", ")}, got "${values.dtype}"`, c);
  const seed = intOption(values.seed, "seed", c, 0, 0xffffffff)!;
  let config: JsonObject;
  if (values.preset !== undefined) {
    if (!presetNames().includes(values.preset))
      throw new UsageError(`unknown preset "${values.preset}"; known presets: ${presetNames().join(", ")}`, c);
    config = preset(values.preset);
  } else config = readConfig(values.config!);

  const out = resolve(values.out);
  if (existsSync(out) && readdirSync(out).length > 0 && !values.force)
    throw new UsageError(`--out ${values.out} is not empty; choose another directory or pass --force to overwrite`, c);

  // only the file's own bar: init has no steps
  const progress = new Progress("init");
  const writing = progress.writing();
  const started = Date.now();
  let resolved: Awaited<ReturnType<typeof initCheckpoint>>["config"];
  try {
    ({ config: resolved } = await initCheckpoint({ config, out, dtype, seed, onProgress: (written, total) => writing(written, total, "model.safetensors") }));
  } finally {
    progress.stop();
  }
  let params = 0;
  for (const shape of expectedShapes(resolved).values()) params += shape.reduce((a, b) => a * b, 1);
  const mb = (params * (dtype === "f32" ? 4 : 2)) / 2 ** 20;
  process.stdout.write(
    `wrote ${out}: ${resolved.architecture}, ${(params / 1e6).toFixed(2)}M parameters, ${dtype}, ${mb.toFixed(1)} MiB, ` +
      `seed ${seed}, in ${((Date.now() - started) / 1000).toFixed(1)} s (weights are random)\n` +
      `serve it with: hybridchat serve --model ${out}\n`,
  );
}
