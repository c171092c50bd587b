// Training on a quantized base (QLoRA): the frozen base's linear weights stay in Q8_0/Q4_0
// blocks, dequantized on the fly in the forward and in the backward for dx; only the LoRA
// tensors learn.
//
// On a tiny random model: the LoRA gradients through the blocks match central differences of
// the float64 reference run on the dequantized weights, and equal the LoRA gradients of the
// same model opened from the dequantized f32 copy (the QLoRA claim: training through the
// blocks is training on the weights they hold). On stories260K quantized with
// `hybridchat quantize`: LoRA SFT teaches the new name, DPO raises the preferred behaviour
// beyond the noise, and the base file and the base's own logits stay bit-identical. Served
// quantized (q8_0), a fine-tuning job over HTTP trains and serves its adapter, and promotes.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type NativeModel, type OptimizerStep, type TensorRef, type TrainBatch } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { runSftFromFiles } from "../engine/train/sft/sft-run.js";
import { runDpoFromFiles } from "../engine/train/preference/dpo-run.js";
import { centralDiff, freshSeed, Rng } from "./reference/check.js";
import { trainForwardRef, upstreamLoss } from "./reference/train.js";
import { dequantize, quantize, type BlockDType } from "./reference/quant.js";
import type { RefLora } from "./reference/llama.js";
import { buildTiny, type Built, type Tiny } from "./tiny-model.js";
import { repoRoot, storiesDir } from "./test-model.js";
import { greedyText, HELD_OUT, NEW_NAME, nameChangeData } from "./sft-helpers.js";
import { greedy, startServer, uploadNameChange, waitForJob } from "./fine-tuning-helpers.js";
import { HybridchatClient } from "../clients/client.js";
import { HELD_OUT_PROMPTS, meanLogRatio, preferencePairs, rate, sampleStories, STORY_PROMPTS } from "./pref-helpers.js";

const TARGETS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
const LINEAR = new Set(TARGETS as readonly string[]);
// every linear weight's rows are whole blocks of 32 (C = 64, I = 96)
const TINY: Tiny = { C: 64, I: 96, L: 2, NH: 4, NKV: 2, HD: 16, V: 37, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };
const PROBE: OptimizerStep = { lr: 0, beta1: 0, beta2: 0, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 };
const RANK = 3;
const ALPHA = 5;

const tmp = mkdtempSync(join(tmpdir(), "hc-qlora-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * The tiny model's tensors with every linear weight quantized to `dtype` (the reference's
 * llama.cpp quantizer), in one raw file: the quantized refs, the f32 refs of the dequantized
 * copy, and the dequantized weights in float64 for the reference.
 */
function quantizeTiny(b: Built, dtype: BlockDType): { quant: TensorRef[]; deq: TensorRef[]; weights: Map<string, Float64Array> } {
  const parts: Buffer[] = [];
  let off = 0;
  const put = (bytes: Uint8Array): number => {
    parts.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    off += bytes.byteLength;
    return off - bytes.byteLength;
  };
  const file = join(tmp, `tiny-${dtype}.bin`);
  const quant: TensorRef[] = [];
  const deq: TensorRef[] = [];
  const weights = new Map<string, Float64Array>();
  for (const t of b.tensors) {
    const w = b.weights.get(t.name)!;
    if (!LINEAR.has(t.name.replace(/^L\d+\./, ""))) {
      const o = put(new Uint8Array(Float32Array.from(w).buffer));
      quant.push({ ...t, file, offset: o });
      deq.push({ ...t, file, offset: o });
      weights.set(t.name, w);
      continue;
    }
    const blocks = quantize(w, dtype);
    const values = dequantize(blocks, dtype);
    quant.push({ name: t.name, file, offset: put(blocks), dtype, shape: t.shape });
    deq.push({ name: t.name, file, offset: put(new Uint8Array(Float32Array.from(values).buffer)), dtype: "f32", shape: t.shape });
    weights.set(t.name, values);
  }
  writeFileSync(file, Buffer.concat(parts));
  return { quant, deq, weights };
}

async function loraGrads(m: NativeModel, batch: TrainBatch, dlogp: Float32Array, dvalues: Float32Array | null): Promise<Map<string, Float32Array>> {
  m.setTrainable({ adapter: "a" });
  await m.trainForward(batch);
  await m.trainBackward(dlogp, dvalues);
  await m.step(PROBE); // lr 0, beta1 0: expAvg = the gradient, the weights untouched
  const g = new Map(m.optimizerState().tensors.map((t) => [t.name, t.expAvg]));
  m.setTrainable(null);
  return g;
}

describe("LoRA gradients through quantized weights (tiny random model)", () => {
  const seed = freshSeed();
  for (const dtype of ["q8_0", "q4_0"] as const) {
    it(`${dtype}: match central differences of the float64 reference on the dequantized weights, and equal the f32 copy's (full fine-tuning: its masters are the dequantized weights)`, async () => {
      const rng = new Rng(seed + (dtype === "q8_0" ? 0 : 1));
      const b = buildTiny(tmp, `tiny-src-${dtype}`, TINY, rng);
      const { quant, deq, weights } = quantizeTiny(b, dtype);
      const open = (refs: TensorRef[]) => native().createModel({ ...b.spec, maxPositions: 32 }, refs, { threads: 2, kvBlockSize: 4, kvBlocks: 32 });
      const Q = open(quant);
      const D = open(deq);
      try {
        for (const m of [Q, D]) m.addAdapter("a", { lora: { rank: RANK, alpha: ALPHA, dropout: 0, targets: [...TARGETS], seed: 5 }, valueHead: true });
        // random nonzero B and value head (the same in both) so every LoRA path carries signal
        for (const p of Q.parameters("a")) {
          const v = p.name.endsWith("lora_A") ? Q.readParameter("a", p.name) : rng.f32(p.shape.reduce((x, y) => x * y, 1), -0.3, 0.3);
          Q.writeParameter("a", p.name, v);
          D.writeParameter("a", p.name, v);
        }
        const counts = [6, 5];
        const T = 11;
        const tokens = Int32Array.from({ length: T }, () => rng.int(TINY.V));
        const targets = Int32Array.from({ length: T }, () => rng.int(TINY.V));
        targets[2] = -1;
        const batch: TrainBatch = { tokens, counts: Int32Array.from(counts), targets, adapter: "a", values: true, grad: true, checkpoint: false };
        const dlogp = rng.f32(T, -1, 1), dvalues = rng.f32(T, -1, 1);

        const gq = await loraGrads(Q, batch, dlogp, dvalues);
        const gd = await loraGrads(D, batch, dlogp, dvalues);
        assert.deepEqual([...gq.keys()].sort(), [...gd.keys()].sort());
        assert.equal(gq.size, 2 * TINY.L * TARGETS.length + 1);

        const lora: RefLora = { rank: RANK, scale: ALPHA / RANK, A: new Map(), B: new Map() };
        let vh = new Float64Array(0);
        const params = new Map<string, Float64Array>();
        for (const p of Q.parameters("a")) {
          const data = Float64Array.from(Q.readParameter("a", p.name));
          params.set(p.name, data);
          if (p.name === "value_head") vh = data;
          else (p.name.endsWith("lora_A") ? lora.A : lora.B).set(p.name.replace(/\.lora_[AB]$/, ""), data);
        }
        const loss = () => upstreamLoss(trainForwardRef(b.ref, weights, [...tokens], counts, [...targets], lora, vh), dlogp, dvalues);

        let checked = 0;
        for (const [name, g] of gq) {
          const d = gd.get(name)!;
          const scale = Math.max(1e-3, ...d.map(Math.abs));
          // through the blocks = through the f32 copy of what they hold (summation order aside)
          for (let i = 0; i < g.length; i++)
            assert.ok(Math.abs(g[i]! - d[i]!) <= 2e-5 * scale + 1e-4 * Math.abs(d[i]!), `${dtype} ${name}[${i}]: blocks ${g[i]}, f32 copy ${d[i]} seed=${seed}`);
          // and both are the gradient of the reference on the dequantized weights
          const t = params.get(name)!;
          for (let k = 0; k < 3; k++) {
            const i = rng.int(t.length);
            const want = centralDiff(t, i, loss);
            const fdScale = Math.max(1e-3, Math.abs(want), scale);
            assert.ok(Math.abs(g[i]! - want) <= 2e-4 * fdScale + 2e-3 * Math.abs(want), `${dtype} ${name}[${i}]: native ${g[i]}, finite difference ${want} seed=${seed}`);
            checked++;
          }
        }
        assert.ok(checked >= 3 * 29);

        // full fine-tuning is not QLoRA: it dequantizes the blocks into f32 master weights
        // (the memory saving is gone) and then trains exactly as the f32 copy does
        const fullGrads = async (m: NativeModel) => {
          m.setTrainable({ base: true });
          await m.trainForward({ ...batch, adapter: null, values: false });
          await m.trainBackward(dlogp, null);
          await m.step(PROBE);
          return new Map(m.optimizerState().tensors.map((x) => [x.name, x.expAvg]));
        };
        const fq = await fullGrads(Q);
        const fd = await fullGrads(D);
        assert.deepEqual([...fq.keys()].sort(), [...fd.keys()].sort());
        for (const [name, g] of fq) assert.deepEqual(g, fd.get(name), `${dtype} full fine-tuning ${name}`);
        const master = Q.readParameter(null, "L1.down");
        const held = weights.get("L1.down")!;
        assert.ok(master.every((v, i) => v === held[i]), `${dtype}: the master weights are the blocks' values`); // (±0 alike)
      } finally {
        Q.dispose();
        D.dispose();
      }
    });
  }
});

// Q4_K needs rows of whole super-blocks (256): a random model of hidden 256. Its f32 copy is
// the same checkpoint with the blocks dequantized into f32 masters (full fine-tuning's
// materialisation, whose dequantizer quantize.test.ts holds to the reference).
it("q4_k (hidden 256): LoRA gradients through the blocks equal the dequantized f32 copy's; tensor parallelism that would split a block is refused at load", async () => {
  const src = join(tmp, "wide");
  await initCheckpoint({ config: { ...preset("tiny"), hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2 }, out: src, seed: 3, std: 0.08 });
  const dir = join(tmp, "wide-q4_k");
  await quantizeCheckpoint({ model: src, out: dir, type: "q4_k" });
  const [Q, D] = [await loadModel(dir, { threads: 2, kvBlocks: 8 }), await loadModel(dir, { threads: 2, kvBlocks: 8 })];
  try {
    D.native.setTrainable({ base: true });
    D.native.setTrainable(null);
    const rng = new Rng(11);
    for (const m of [Q, D]) m.native.addAdapter("a", { lora: { rank: 4, alpha: 8, dropout: 0, targets: [...TARGETS], seed: 2 }, valueHead: false });
    for (const p of Q.native.parameters("a")) {
      const v = p.name.endsWith("lora_A") ? Q.native.readParameter("a", p.name) : rng.f32(p.shape.reduce((x, y) => x * y, 1), -0.1, 0.1);
      Q.native.writeParameter("a", p.name, v);
      D.native.writeParameter("a", p.name, v);
    }
    const T = 12;
    const V = Q.config.vocabSize;
    const batch: TrainBatch = {
      tokens: Int32Array.from({ length: T }, () => rng.int(V)), counts: Int32Array.of(7, 5), targets: Int32Array.from({ length: T }, () => rng.int(V)),
      adapter: "a", values: false, grad: true, checkpoint: false,
    };
    const dlogp = rng.f32(T, -1, 1);
    const gq = await loraGrads(Q.native, batch, dlogp, null);
    const gd = await loraGrads(D.native, batch, dlogp, null);
    assert.equal(gq.size, 2 * 2 * TARGETS.length);
    for (const [name, g] of gq) {
      const d = gd.get(name)!;
      const scale = Math.max(1e-6, ...d.map(Math.abs));
      assert.ok(scale > 1e-6, `${name} carries a gradient`);
      for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i]! - d[i]!) <= 2e-5 * scale + 1e-4 * Math.abs(d[i]!), `q4_k ${name}[${i}]: blocks ${g[i]}, f32 copy ${d[i]}`);
    }
  } finally {
    Q.dispose();
    D.dispose();
  }
  // o's rows (256) split in two are half a super-block each
  await assert.rejects(loadModel(dir, { threads: 2, kvBlocks: 8, tensorParallel: 2 }), (e: Error & { code?: string }) =>
    e.code === "bad_tensor_parallel" && /layer 0's o weight \(q4_k, rows of 256\) inside its blocks of 256/.test(e.message));
});

const sha = (file: string): string => createHash("sha256").update(readFileSync(file)).digest("hex");

/** The base's own logits on a fixed text (no adapter). */
async function baseLogits(m: LoadedModel): Promise<Float32Array> {
  const tokens = Int32Array.from(m.tokenizer.encode(HELD_OUT, true));
  const out = await m.native.forward({ seqIds: Int32Array.of(991), tokens, counts: Int32Array.of(tokens.length), logits: "all" });
  m.native.freeSeq(991);
  return Float32Array.from(out);
}

describe("stories260K quantized to q4_0: training by effect, the base frozen", () => {
  const dir = join(tmp, "stories-q4_0");
  let lm: LoadedModel;
  let fileHash = "";
  let logits0: Float32Array;
  before(async () => {
    await quantizeCheckpoint({ model: storiesDir, out: dir, type: "q4_0" });
    fileHash = sha(join(dir, "model.safetensors"));
    lm = await loadModel(dir, { threads: 2, kvBlocks: 512 });
    logits0 = await baseLogits(lm);
  });
  after(() => lm?.dispose());

  it("LoRA SFT teaches the new name to the adapter only", async () => {
    const data = join(tmp, "names.jsonl");
    await nameChangeData(lm, data);
    const baseText = await greedyText(lm, HELD_OUT, 8);
    assert.match(baseText, /^ Lily\b/, "the quantized base names the girl Lily");
    const out = join(tmp, "sft");
    const r = await runSftFromFiles({
      modelDir: dir, model: lm, dataFile: data, outDir: out, loraRank: 8, loraDropout: 0, targets: [...TARGETS],
      epochs: "auto", batchSize: "auto", seed: 0, schedule: "linear", resume: false, threads: 2,
    });
    assert.equal(r.steps, 4 * 32);
    assert.match(await greedyText(lm, HELD_OUT, 8, "sft"), new RegExp(`^ ${NEW_NAME}\\b`));
    assert.equal(await greedyText(lm, HELD_OUT, 8), baseText, "the base without the adapter is unchanged");
  });

  it("DPO on a few dozen pairs raises the preferred behaviour on held-out prompts beyond the noise, KL bounded", async (t) => {
    const TOKENS = 32;
    const pairs = preferencePairs(await sampleStories(lm, STORY_PROMPTS, 96, TOKENS, 1));
    assert.ok(pairs.length >= 48, `${pairs.length} pairs`);
    const data = join(tmp, "prefs.jsonl");
    writeFileSync(data, pairs.slice(0, 48).map((p) => JSON.stringify(p)).join("\n") + "\n");
    const r = await runDpoFromFiles({
      modelDir: dir, model: lm, dataFile: data, outDir: join(tmp, "dpo"), loraRank: 8, targets: [...TARGETS],
      epochs: "auto", batchSize: "auto", seed: 0, resume: false, threads: 2,
    });
    assert.ok(r.lastEpoch!.train_reward_accuracy >= 0.5 + 3 * Math.sqrt(0.25 / 48), `train reward accuracy ${r.lastEpoch!.train_reward_accuracy}`);
    const N = 64;
    const base = await sampleStories(lm, HELD_OUT_PROMPTS, N, TOKENS, 7);
    const tuned = await sampleStories(lm, HELD_OUT_PROMPTS, N, TOKENS, 7, "dpo");
    const p0 = rate(base), p1 = rate(tuned);
    // as in pref-e2e: with no change both rates are draws of 256 around p0, their difference
    // has sd √(p0(1−p0)·2/256); the rise must exceed 4 of them (and 0.15), the base below half
    const sd = Math.sqrt((2 * Math.max(p0, 0.05) * (1 - Math.max(p0, 0.05))) / base.length);
    const kl = await meanLogRatio(lm, tuned, "dpo");
    t.diagnostic(`animal rate ${p0} → ${p1} (sd ${sd.toFixed(3)}); KL ${kl.toFixed(3)} nats/token`);
    assert.ok(p0 < 0.4, `base rate ${p0}`);
    assert.ok(p1 - p0 >= Math.max(0.15, 4 * sd), `rate base ${p0} → DPO ${p1}`);
    assert.ok(kl > 0 && kl < 0.5, `KL ${kl} nats/token`);
  });

  it("train rm and train ppo (the CLI) run on the quantized base and write their adapters", () => {
    const pairs = join(tmp, "prefs.jsonl");
    const prompts = join(tmp, "prompts.jsonl");
    writeFileSync(prompts, STORY_PROMPTS.slice(0, 4).map((prompt) => JSON.stringify({ prompt })).join("\n") + "\n");
    const train = (args: string[]) => spawnSync(process.execPath, [join(repoRoot, "dist", "cli", "main.js"), "train", ...args, "--threads", "2"], { encoding: "utf8" });
    const rm = train(["rm", "--model", dir, "--data", pairs, "--out", join(tmp, "rm"), "--epochs", "1", "--batch-size", "8"]);
    assert.equal(rm.status, 0, rm.stderr);
    const ppo = train(["ppo", "--actor", join(tmp, "sft"), "--model", dir, "--reward-model", join(tmp, "rm"), "--prompts", prompts, "--out", join(tmp, "ppo"),
      "--generation-batch", "4", "--train-batch", "4", "--max-answer-tokens", "16"]);
    assert.equal(ppo.status, 0, ppo.stderr);
    assert.match(ppo.stdout, /wrote the actor/);
    const log = readFileSync(join(tmp, "ppo", "ppo_log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { reward: number; kl: number });
    assert.equal(log.length, 1);
    assert.ok(Number.isFinite(log[0]!.reward) && Number.isFinite(log[0]!.kl));
  });

  it("the frozen base is bit-identical after training: the quantized file and the base's logits", async () => {
    assert.equal(sha(join(dir, "model.safetensors")), fileHash);
    assert.deepEqual(await baseLogits(lm), logits0);
  });
});

it("a fine-tuning job over HTTP on a server of the q8_0 model: the adapter serves the new name, promotion and roll-back", { timeout: 120_000 }, async () => {
  const dir = join(tmp, "stories-q8_0");
  await quantizeCheckpoint({ model: storiesDir, out: dir, type: "q8_0" });
  const fileHash = sha(join(dir, "model.safetensors"));
  const s = await startServer(join(tmp, "data"), { model: dir });
  try {
    const model = (await s.client.models.list()).data[0]!.id;
    const fileId = await uploadNameChange(s, join(tmp, "ft-names.jsonl"));
    const baseText = await greedy(s.client, model, HELD_OUT);
    assert.match(baseText, /^ Lily\b/);
    const job = await s.client.fineTuning.jobs.create({
      model, training_file: fileId, suffix: "zara", seed: 0,
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 4, batch_size: 1, learning_rate_multiplier: "auto" } } },
    });
    const final = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    const ft = final.fine_tuned_model!;
    assert.match(await greedy(s.client, ft, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`));
    assert.equal(await greedy(s.client, model, HELD_OUT), baseText, "the base id still serves the base weights");
    // promotion merges the adapter into (a dequantized copy of) the base rows; rolling back
    // serves the blocks again, token for token as before
    const hc = new HybridchatClient({ baseURL: `${s.url}/v1`, maxRetries: 0 });
    await hc.promote(ft);
    assert.match(await greedy(s.client, model, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`));
    await hc.promote(model);
    assert.equal(await greedy(s.client, model, HELD_OUT), baseText);
  } finally {
    await s.server.close();
  }
  assert.equal(sha(join(dir, "model.safetensors")), fileHash, "the quantized file is untouched");
});
