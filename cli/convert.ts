// `hybridchat convert`: a checkpoint as a GGUF file (engine/convert-gguf.ts).
import { parseArgs } from "node:util";
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { convertToGguf, GGUF_OUT_TYPES, type GgufOutType } from "../engine/convert-gguf.js";
import { UsageError } from "./errors.js";
import { CONVERT_HELP } from "./convert.help.js";
import { Progress } from "./progress-bar.js";

export async function convertCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      type: { type: "string", default: "f16" },
      "quantize-head": { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(CONVERT_HELP);
    return;
  }
  const c = "convert";
  if (values.model === undefined) throw new UsageError("--model DIR is required (the checkpoint to convert)", c);
  if (values.out === undefined) throw new UsageError("--out FILE.gguf is required", c);
  const type = values.type as GgufOutType;
  if (!GGUF_OUT_TYPES.includes(type)) throw new UsageError(`--type must be ${GGUF_OUT_TYPES.join(", ")}; got "${values.type}"`, c);
  const quantizeHead = values["quantize-head"] === true;
  if (quantizeHead && !["q8_0", "q4_0", "q4_k"].includes(type)) throw new UsageError(`--quantize-head goes with a block --type (q8_0, q4_0, q4_k); got "${type}"`, c);
  const model = resolve(values.model), out = resolve(values.out);
  if (!existsSync(model) || !statSync(model).isDirectory()) throw new UsageError(`--model ${values.model}: no such checkpoint directory`, c);
  if (!out.toLowerCase().endsWith(".gguf")) throw new UsageError(`--out ${values.out}: the file name must end in .gguf`, c);
  if (existsSync(out) && !values.force) throw new UsageError(`--out ${values.out} exists; choose another file or pass --force to overwrite`, c);
  const progress = new Progress("convert");
  const writing = progress.writing();
  const started = Date.now();
  let s: Awaited<ReturnType<typeof convertToGguf>>;
  try {
    s = await convertToGguf({ model, out, type, quantizeHead, onProgress: (w, t) => writing(w, t, out) });
  } finally {
    progress.stop();
  }
  process.stdout.write(
    `wrote ${out}: ${s.tensors} tensors, ${type}, ${(s.bytes / 2 ** 20).toFixed(1)} MiB of weights, in ${((Date.now() - started) / 1000).toFixed(1)} s\n` +
      (s.kept.length ? `left in the checkpoint's type (rows not whole blocks): ${s.kept.join(", ")}\n` : "") +
      `serve it with: hybridchat serve --model ${out}\n`,
  );
}
