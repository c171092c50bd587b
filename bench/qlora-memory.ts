// Peak resident memory of LoRA training on a bf16 base vs the same base quantized (QLoRA):
// the 1B-class shape of issue 17 (hidden 2048, 16 layers, GQA 32/8, MLP 8192, vocab 32000),
// random init (weights do not change memory or speed), quantized with `hybridchat quantize`.
// Each mode runs in a process of its own (bench/train-one.ts) so getrusage's maxrss is its own.
//   node dist/bench/qlora-memory.js [--layers N] [--seq 256] [--steps 1] [--threads 2] [--types q4_0,q8_0]
// --layers below 16 makes a shallower model of the same width when the 1B is too slow.
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { isQuantizeDType } from "../native/index.js";
import { benchCheckpoint, oneBName } from "./models.js";
import { progressBar } from "./progress.js";
import type { TrainOneResult } from "./train-speed.js";

const { values: a } = parseArgs({
  options: {
    layers: { type: "string", default: "16" },
    seq: { type: "string", default: "256" },
    steps: { type: "string", default: "1" },
    threads: { type: "string", default: "2" },
    types: { type: "string", default: "q4_0" },
  },
});
const layers = Number(a.layers);
const outRoot = fileURLToPath(new URL("../../bench/out", import.meta.url));
const root = join(outRoot, "models");
const name = oneBName(layers);
const bf16 = await benchCheckpoint(outRoot, name, "bf16");
const dirs: [string, string][] = [["bf16", bf16]];
for (const type of a.types!.split(",")) {
  if (!isQuantizeDType(type)) throw new Error(`--types: ${type} is not q8_0, q4_0 or q4_k`);
  const dir = join(root, `${name}-${type}`);
  if (!existsSync(join(dir, "model.safetensors"))) {
    const bar = progressBar(`quantize ${name} ${type}`);
    await quantizeCheckpoint({ model: bf16, out: dir, type, onProgress: bar.update });
    bar.stop();
  }
  dirs.push([type, dir]);
}

const trainOne = fileURLToPath(new URL("./train-one.js", import.meta.url));
const gib = (b: number) => (b / 2 ** 30).toFixed(2);
console.log(`${cpus()[0]?.model ?? "?"}, ${a.threads} threads; ${name} (${layers} layers), LoRA r16 on every linear layer, batch 1 × seq ${a.seq}, ${a.steps} timed step(s) after one warm-up`);
console.log("| base | model.safetensors GiB | RSS after load GiB | peak RSS GiB | train tok/s |");
console.log("| --- | --- | --- | --- | --- |");
for (const [label, dir] of dirs) {
  const out = execFileSync(process.execPath, [trainOne, dir, "lora", "1", a.seq!, a.steps!, a.threads!], { encoding: "utf8", maxBuffer: 1 << 20 });
  const r = JSON.parse(out.trim().split("\n").pop()!) as TrainOneResult;
  const file = statSync(join(dir, "model.safetensors")).size;
  console.log(`| ${label} | ${gib(file)} | ${gib(r.baselineRssBytes)} | ${gib(r.maxRssBytes)} | ${r.tokensPerS.toFixed(1)} |`);
}
