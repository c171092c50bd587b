// SFT end to end on stories260K: 32 of the model's own stories with the girl renamed teach
// it the new name (greedy completions of a held-out opening change with the adapter, not
// without); the saved PEFT adapter reloads to identical logits; full fine-tuning writes an
// HF checkpoint loadModel serves with the new behaviour; an interrupted run resumed with
// --resume ends with the same weights as an uninterrupted one; the CLI as a child process.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { loadPeftAdapter } from "../engine/peft.js";
import { readSftJsonl } from "../engine/train/data/sft-data.js";
import { encodeExamples } from "../engine/train/data/sft-encode.js";
import { readF32Tensors } from "../engine/safetensors-writer.js";
import { runSftFromFiles, TRAIN_LOG, type SftRunOptions } from "../engine/train/sft/sft-run.js";
import { TrainingInterrupted, type StepEvent } from "../engine/train/sft/sft.js";
import { storiesDir, repoRoot } from "./test-model.js";
import { greedyText, HELD_OUT, NEW_NAME, nameChangeData } from "./sft-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "hc-sft-"));
const data = join(tmp, "names.jsonl");
let base: LoadedModel;
let baseText: string;

before(async () => {
  base = await loadModel(storiesDir, { threads: 2, kvBlocks: 8 });
  await nameChangeData(base, data);
  baseText = await greedyText(base, HELD_OUT, 8);
});
after(() => {
  base?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function opts(out: string, o: Partial<SftRunOptions> = {}): SftRunOptions {
  return {
    modelDir: storiesDir,
    dataFile: data,
    outDir: out,
    loraRank: 8,
    loraDropout: 0,
    targets: ["q", "k", "v", "o", "gate", "up", "down"],
    epochs: "auto",
    batchSize: "auto",
    seed: 0,
    schedule: "linear",
    resume: false,
    threads: 2,
    ...o,
  };
}

type LogLine = StepEvent & { type: "step" | "eval" };
const readLog = (out: string): LogLine[] => readFileSync(join(out, TRAIN_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as LogLine);

test("the base model names the girl Lily, not the new name", () => {
  assert.match(baseText, /^ Lily\b/);
  assert.ok(!baseText.includes(NEW_NAME));
});

describe("LoRA SFT with the defaults", () => {
  const out = join(tmp, "lora");
  let lm: LoadedModel;
  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 8 });
  });
  after(() => lm?.dispose());

  test("teaches the new name to the adapter only; writes PEFT files, a step log and epoch checkpoints", async () => {
    const r = await runSftFromFiles(opts(out, { model: lm }));
    // auto: 32 examples -> ceil(100 / 32) = 4 epochs at batch 1
    assert.equal(r.settings.epochs, 4);
    assert.equal(r.steps, 4 * 32);
    const tuned = await greedyText(lm, HELD_OUT, 8, "sft");
    assert.match(tuned, new RegExp(`^ ${NEW_NAME}\\b`), tuned);
    assert.equal(await greedyText(lm, HELD_OUT, 8), baseText, "the base without the adapter is unchanged");
    for (const f of ["adapter_config.json", "adapter_model.safetensors", TRAIN_LOG]) assert.ok(existsSync(join(out, f)), f);
    assert.deepEqual(readdirSync(out).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-128", "checkpoint-32", "checkpoint-64", "checkpoint-96"]);
    for (const f of ["adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"]) assert.ok(existsSync(join(out, "checkpoint-64", f)), f);
    const log = readLog(out);
    const steps = log.filter((l) => l.type === "step");
    assert.deepEqual(steps.map((l) => l.step), Array.from({ length: 128 }, (_, i) => i + 1));
    for (const k of ["step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"]) assert.equal(typeof (steps[5] as unknown as Record<string, unknown>)[k], "number", k);
    assert.equal(log.filter((l) => l.type === "eval").length, 4);
    const mean = (a: LogLine[]) => a.reduce((s, l) => s + l.loss, 0) / a.length;
    assert.ok(mean(steps.slice(-32)) < 0.6 * mean(steps.slice(0, 32)), "the loss falls");
  });

  test("the saved adapter reloads into a fresh model with identical logits", async () => {
    const fresh = await loadModel(storiesDir, { threads: 2, kvBlocks: 8 });
    try {
      await loadPeftAdapter(fresh.native, fresh.config, "names", out);
      const tokens = fresh.tokenizer.encode(HELD_OUT, true);
      const fwd = (m: LoadedModel, adapter: string) =>
        m.native.forward({ seqIds: Int32Array.of(77), tokens: Int32Array.from(tokens), counts: Int32Array.of(tokens.length), logits: "all", adapters: [adapter] });
      const a = await fwd(lm, "sft");
      const b = await fwd(fresh, "names");
      lm.native.freeSeq(77);
      fresh.native.freeSeq(77);
      assert.deepEqual([...b], [...a]);
      assert.match(await greedyText(fresh, HELD_OUT, 8, "names"), new RegExp(`^ ${NEW_NAME}\\b`));
    } finally {
      fresh.dispose();
    }
  });
});

test("full fine-tuning writes an HF checkpoint that loadModel serves with the new name; each file's write is followed to its end", async () => {
  const out = join(tmp, "full");
  const writes: { file: string; written: number; total: number }[] = [];
  const r = await runSftFromFiles({ ...opts(out, { loraRank: 0 }), onWriteProgress: (written, total, file) => writes.push({ file, written, total }) });
  assert.equal(r.settings.lr, 1e-4);
  // per epoch the checkpoint's weights and AdamW moments (twice the weights), then the result
  const ends = writes.filter((w) => w.written === w.total).map((w) => w.file);
  assert.deepEqual(ends, [...Array.from({ length: r.settings.epochs }, () => ["model.safetensors", "optimizer.safetensors"]).flat(), "model.safetensors"]);
  const weightBytes = statSync(join(out, "model.safetensors")).size;
  const modelTotal = writes.find((w) => w.file === "model.safetensors")!.total;
  assert.ok(modelTotal < weightBytes && modelTotal > weightBytes * 0.9, "the total is the tensor bytes of the file");
  assert.equal(writes.find((w) => w.file === "optimizer.safetensors")!.total, 2 * modelTotal);
  for (let i = 1; i < writes.length; i++)
    if (writes[i]!.file === writes[i - 1]!.file && writes[i - 1]!.written < writes[i - 1]!.total) assert.ok(writes[i]!.written > writes[i - 1]!.written, "bytes only grow within a file");
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) assert.ok(existsSync(join(out, f)), f);
  const tuned = await loadModel(out, { threads: 2, kvBlocks: 8 });
  try {
    assert.match(await greedyText(tuned, HELD_OUT, 8), new RegExp(`^ ${NEW_NAME}\\b`));
  } finally {
    tuned.dispose();
  }
});

test("chat-format data with a held-out validation file: validation loss reported each epoch, as computed apart, and it falls beyond the noise", async (t) => {
  // 24 openings train, the other 8 validate: no validation conversation is a training one
  const lines = readFileSync(data, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { prompt: string; completion: string });
  const chatLine = (l: { prompt: string; completion: string }) => JSON.stringify({ messages: [{ role: "user", content: l.prompt }, { role: "assistant", content: l.completion }] });
  const chat = join(tmp, "names-chat.jsonl");
  const heldOut = join(tmp, "names-chat-val.jsonl");
  writeFileSync(chat, lines.slice(0, 24).map(chatLine).join("\n"));
  writeFileSync(heldOut, lines.slice(24).map(chatLine).join("\n"));
  const out = join(tmp, "chat");
  const epochs: (number | null)[] = [];
  await runSftFromFiles(opts(out, { dataFile: chat, validationFile: heldOut, epochs: 2, batchSize: 4, onEpoch: (e) => epochs.push(e.val_loss) }));
  assert.equal(epochs.length, 2);
  const evals = readLog(out).filter((l) => l.type === "eval") as unknown as { val_loss: number }[];
  assert.deepEqual(evals.map((e) => e.val_loss), epochs);

  // each held-out example's mean −log p of its answer tokens, through the inference forward
  // (logits, float64 log-softmax) rather than the training forward that computed val_loss
  const { encoded } = encodeExamples({ tokenizer: base.tokenizer, chatTemplate: base.chatTemplate, maxLength: base.maxContext }, readSftJsonl(heldOut));
  await loadPeftAdapter(base.native, base.config, "val-check", out);
  const V = base.config.vocabSize;
  const losses = async (adapter: string | null): Promise<{ sum: number; n: number }[]> => {
    const res: { sum: number; n: number }[] = [];
    for (const ex of encoded) {
      const logits = await base.native.forward({ seqIds: Int32Array.of(600), tokens: ex.tokens, counts: Int32Array.of(ex.tokens.length), logits: "all", adapters: adapter ? [adapter] : undefined });
      base.native.freeSeq(600);
      let sum = 0;
      let n = 0;
      for (let i = 1; i < ex.tokens.length; i++) {
        if (!ex.mask[i]) continue;
        const row = logits.subarray((i - 1) * V, i * V);
        let max = -Infinity;
        for (const x of row) max = Math.max(max, x);
        let z = 0;
        for (const x of row) z += Math.exp(x - max);
        sum -= row[ex.tokens[i]] - max - Math.log(z);
        n++;
      }
      res.push({ sum, n });
    }
    return res;
  };
  let tuned: { sum: number; n: number }[];
  let before: { sum: number; n: number }[];
  try {
    [tuned, before] = [await losses("val-check"), await losses(null)];
  } finally {
    base.native.removeAdapter("val-check");
  }
  const tokenMean = (xs: { sum: number; n: number }[]) => xs.reduce((a, x) => a + x.sum, 0) / xs.reduce((a, x) => a + x.n, 0);
  // the reported number is the held-out file's loss under the final adapter, not the training file's
  assert.ok(Math.abs(tokenMean(tuned) - epochs[1]!) <= 1e-4 * epochs[1]!, `val_loss ${epochs[1]} but the held-out file's loss is ${tokenMean(tuned)}`);
  // it fell from the base's: per example, paired, by more than 4 standard errors of the mean
  // improvement (the spread across the 8 held-out stories is the noise)
  const diffs = before.map((b, i) => b.sum / b.n - tuned[i]!.sum / tuned[i]!.n);
  const mean = diffs.reduce((a, d) => a + d, 0) / diffs.length;
  const se = Math.sqrt(diffs.reduce((a, d) => a + (d - mean) ** 2, 0) / (diffs.length - 1) / diffs.length);
  t.diagnostic(`held-out loss: base ${tokenMean(before).toFixed(4)}, epoch 1 ${epochs[0]!.toFixed(4)}, epoch 2 ${epochs[1]!.toFixed(4)}; per-example improvement ${mean.toFixed(4)} ± ${se.toFixed(4)} (se)`);
  assert.ok(mean > 4 * se && mean > 0, `held-out improvement ${mean} with standard error ${se}`);
  assert.ok(epochs[1]! < epochs[0]!, JSON.stringify(epochs));
});

describe("--resume", () => {
  for (const rank of [4, 0]) {
    test(`an interrupted ${rank ? "LoRA" : "full"} run resumed ends with the same weights as an uninterrupted one`, async () => {
      const o = { loraRank: rank, epochs: 3, batchSize: 4, targets: ["q", "v"] as SftRunOptions["targets"], lr: rank ? 2e-3 : 1e-4 } as const;
      const whole = join(tmp, `whole-${rank}`);
      const parts = join(tmp, `parts-${rank}`);
      await runSftFromFiles(opts(whole, o));
      // stop in the middle of epoch 2 (8 steps an epoch): the last checkpoint is after epoch 1
      const abort = new AbortController();
      await assert.rejects(
        runSftFromFiles(opts(parts, { ...o, signal: abort.signal, onStep: (e) => e.step === 11 && abort.abort() })),
        (e) => e instanceof TrainingInterrupted && e.step === 11,
      );
      assert.ok(!existsSync(join(parts, rank ? "adapter_config.json" : "config.json")));
      // a fresh run into the same directory is refused; a resume with other settings too
      await assert.rejects(runSftFromFiles(opts(parts, o)), /already holds a training run; pass --resume/);
      await assert.rejects(runSftFromFiles(opts(parts, { ...o, resume: true, lr: 1e-2 })), /cannot resume .*lr: 0\.00\d+ → 0\.01/);
      const r = await runSftFromFiles(opts(parts, { ...o, resume: true }));
      assert.equal(r.startStep, 8);
      assert.match(r.resumedFrom!, /checkpoint-8$/);
      const file = rank ? "adapter_model.safetensors" : "model.safetensors";
      const a = readF32Tensors(join(whole, file)).tensors;
      const b = readF32Tensors(join(parts, file)).tensors;
      assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
      for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, k);
      const opt = (d: string) => readF32Tensors(join(d, "checkpoint-24", "optimizer.safetensors"));
      assert.deepEqual(opt(parts).metadata, opt(whole).metadata);
      // the log reads as one run: every step once
      assert.deepEqual(readLog(parts).filter((l) => l.type === "step").map((l) => l.step), Array.from({ length: 24 }, (_, i) => i + 1));
    });
  }
});

describe("hybridchat train sft (child process)", () => {
  const CLI = join(repoRoot, "dist", "cli", "main.js");
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, "train", "sft", ...args], { encoding: "utf8" });

  test("trains, prints progress lines, writes the log and the adapter", () => {
    const out = join(tmp, "cli");
    const r = run(["--model", storiesDir, "--data", data, "--out", out, "--epochs", "1", "--batch-size", "8", "--lora-rank", "4", "--target-modules", "q_proj,v_proj", "--threads", "2"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /32 examples .* LoRA r=4 alpha=8 on q,v; 1 epochs × 4 steps of 8 sequences/);
    assert.match(r.stdout, /epoch 1: train loss \d/);
    assert.match(r.stdout, /wrote the PEFT adapter to/);
    assert.equal(readLog(out).filter((l) => l.type === "step").length, 4);
    const cfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    assert.deepEqual([cfg.r, cfg.lora_alpha, cfg.target_modules], [4, 8, ["q_proj", "v_proj"]]);
  });

  test("SIGINT stops at a step boundary (exit 130, says --resume); --resume then finishes the run", async () => {
    const out = join(tmp, "cli-int");
    const args = ["--model", storiesDir, "--data", data, "--out", out, "--epochs", "25", "--batch-size", "1", "--lora-rank", "2", "--target-modules", "q", "--threads", "1"];
    const child = spawn(process.execPath, [CLI, "train", "sft", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let signalled = false;
    child.stdout!.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
      // one signal: the run must stop cleanly at the next step boundary by itself
      if (!signalled && stdout.includes("checkpoint ")) signalled = child.kill("SIGINT");
    });
    child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 130, stdout + stderr);
    assert.match(stderr, /training interrupted after step \d+; continue from the last checkpoint with the same command and --resume/);
    assert.ok(!existsSync(join(out, "adapter_config.json")));
    const r = run([...args, "--resume", "--epochs", "25"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /resuming from .*checkpoint-\d+ \(step \d+\)/);
    assert.ok(existsSync(join(out, "adapter_config.json")));
    assert.deepEqual(readLog(out).filter((l) => l.type === "step").map((l) => l.step), Array.from({ length: 25 * 32 }, (_, i) => i + 1));
  });

  test("bad data: every bad line listed, exit 1, nothing written", () => {
    const bad = join(tmp, "bad.jsonl");
    writeFileSync(bad, '{"prompt":"a","completion":"b"}\n{oops\n{"prompt":"a"}\n');
    const out = join(tmp, "cli-bad");
    const r = run(["--model", storiesDir, "--data", bad, "--out", out]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /2 bad lines; nothing was trained/);
    assert.match(r.stderr, /line 2: not valid JSON/);
    assert.match(r.stderr, /line 3: "completion" must be a string/);
    assert.ok(!existsSync(out));
  });

  test("usage errors say what to do (exit 2); --help has examples", () => {
    const r = run(["--model", storiesDir, "--data", data]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--out is required/);
    assert.match(r.stderr, /hybridchat train sft --help/);
    const t = run(["--model", storiesDir, "--data", data, "--out", join(tmp, "x"), "--target-modules", "q,lm_head"]);
    assert.equal(t.status, 2);
    assert.match(t.stderr, /unknown module "lm_head"/);
    const h = run(["--help"]);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /Examples:\n {2}hybridchat train sft --model/);
  });
});
