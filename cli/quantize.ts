// `hybridchat quantize`: a checkpoint with Q8_0 / Q4_0 linear weights (engine/quantize-checkpoint.ts).
import { parseArgs } from "node:util";
import { existsSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { isQuantizeDType } from "../native/index.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { UsageError } from "./errors.js";
import { QUANTIZE_HELP } from "./quantize.help.js";
import { Progress } from "./progress-bar.js";

export async function quantizeCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      type: { type: "string" },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(QUANTIZE_HELP);
    return;
  }
  const c = "quantize";
  if (values.model === undefined) throw new UsageError("--model DIR is required (the checkpoint to quantize)", c);
  if (values.out === undefined) throw new UsageError("--out DIR is required (where to write the quantized checkpoint)", c);
  if (values.type === undefined || !isQuantizeDType(values.type)) throw new UsageError(`--type must be q8_0, q4_0 or q4_k${values.type ? `, got "${values.type}"` : ""}`, c);
  const model = resolve(values.model), out = resolve(values.out);
  if (!existsSync(model)) throw new UsageError(`--model ${values.model}: no such directory`, c);
  if (out === model) throw new UsageError("--out must differ from --model", c);
  if (existsSync(out) && readdirSync(out).length > 0 && !values.force)
    throw new UsageError(`--out ${values.out} is not empty; choose another directory or pass --force to overwrite`, c);
  const progress = new Progress("quantize");
  const writing = progress.writing();
  const started = Date.now();
  let s: Awaited<ReturnType<typeof quantizeCheckpoint>>;
  try {
    s = await quantizeCheckpoint({ model, out, type: values.type, onProgress: (w, t) => writing(w, t, "model.safetensors") });
  } finally {
    progress.stop();
  }
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  process.stdout.write(
    `wrote ${out}: ${s.quantized} linear weights as ${values.type}, ${mib(s.bytesIn)} -> ${mib(s.bytesOut)} MiB, ` +
      `in ${((Date.now() - started) / 1000).toFixed(1)} s\n` +
      (s.kept.length ? `left unquantized (rows not whole blocks): ${s.kept.join(", ")}\n` : "") +
      `serve it with: hybridchat serve --model ${out}\n`,
  );
}
