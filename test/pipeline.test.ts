// `hybridchat pipeline` as a user runs it, on the real stories260K: the data is built inside
// the test from the base's own samples (stories that mention a dog are the preferred
// behaviour, as in ppo-effect.test.ts): step 1 learns from the dog stories, step 2 from
// dog-vs-no-dog pairs, step 3 runs PPO on story openings. On held-out openings the final
// actor must mention dogs clearly more often than the base. Then `--step 3` on copies of
// steps 1 and 2, and the errors for a step whose input is missing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { loadPeftAdapter } from "../engine/peft.js";
import { CURVES_SVG } from "../engine/train/pipeline/pipeline.js";
import { PPO_LOG } from "../engine/train/ppo/ppo-run.js";
import { preferencePairs, rate, sampleStories } from "./pref-helpers.js";
import { CLI } from "./serve-process.js";
import { storiesDir } from "./test-model.js";

const TRAIN = ["Tom had a pet", "Ben and his", "At the farm, there was a", "Once upon a time, there was a", "Sam had a pet", "Anna and her", "Once upon a time, there was a big", "One day, a little"];
const HELD_OUT = ["One day, a small", "Mia had a pet", "Lily and her", "On the farm, there was a"];
const DOG = /\bdogs?\b/i;
const ANSWER = 64;
const PPO_STEPS = 6;

const pipeline = (args: string[]) => spawnSync(process.execPath, [CLI, "pipeline", "--model", storiesDir, "--threads", "2", ...args], { encoding: "utf8", timeout: 240_000 });
const jsonl = (rows: readonly object[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

describe("hybridchat pipeline on stories260K", () => {
  let lm: LoadedModel;
  let dir: string;
  const out = (): string => join(dir, "rlhf");
  const files = (): string[] => ["--sft-data", join(dir, "sft.jsonl"), "--preference-data", join(dir, "prefs.jsonl"), "--prompts", join(dir, "prompts.jsonl")];

  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 1024 });
    dir = mkdtempSync(join(tmpdir(), "hc-pipeline-"));
    const own = await sampleStories(lm, TRAIN, 150, ANSWER, 1);
    const pairs = preferencePairs(own, DOG);
    const held = Math.floor(pairs.length / 4);
    // a few dozen demonstrations: the dog stories, each as its opening and continuation
    const demos = own.filter((s) => DOG.test(s.text)).slice(0, 48);
    writeFileSync(join(dir, "sft.jsonl"), jsonl(demos.map((s) => ({ prompt: s.prompt, completion: s.text }))));
    writeFileSync(join(dir, "prefs.jsonl"), jsonl(pairs.slice(held)));
    writeFileSync(join(dir, "prefs-held-out.jsonl"), jsonl(pairs.slice(0, held)));
    writeFileSync(join(dir, "prompts.jsonl"), jsonl(Array.from({ length: PPO_STEPS * 32 }, (_, i) => ({ prompt: TRAIN[i % TRAIN.length] }))));
  });
  after(() => {
    lm?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the three steps run end to end; outputs load; the SVG is drawn; the actor prefers what the data preferred", async (t) => {
    const r = pipeline([
      ...files(),
      "--out", out(),
      "--sft-epochs", "2",
      "--rm-validation", join(dir, "prefs-held-out.jsonl"),
      "--rm-epochs", "5",
      "--rm-lr", "2e-3",
      "--rm-batch-size", "16",
      "--rm-seed", "1",
      "--ppo-generation-batch", "32",
      "--ppo-train-batch", "16",
      "--ppo-max-answer-tokens", String(ANSWER),
      "--ppo-actor-lr", "2e-3",
      "--ppo-critic-lr", "2e-3",
      "--ppo-schedule", "constant",
      "--ppo-seed", "5",
    ]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    t.diagnostic(r.stdout.split("\n").filter((l) => l.startsWith("step ")).join(" | "));
    // one summary line per step, in order
    const summaries = r.stdout.split("\n").filter((l) => /^step \d \(.*\): \d+ steps in/.test(l));
    assert.equal(summaries.length, 3, r.stdout);
    assert.match(summaries[0], /^step 1 \(SFT\): \d+ steps in [\d.]+ s, final train loss [\d.]+ → .*step1-sft$/);
    const acc = Number(/held out ([\d.]+)%/.exec(summaries[1])?.[1]);
    assert.ok(acc >= 80, `reward model held-out accuracy ${acc} %: ${summaries[1]}`);
    assert.match(summaries[2], new RegExp(`^step 3 \\(PPO\\): ${PPO_STEPS} steps in .*, reward -?[\\d.]+ → -?[\\d.]+, KL`));
    assert.match(r.stdout, /actor: the SFT adapter/, "step 3's actor starts from step 1's adapter");
    assert.match(r.stdout, /reference: the SFT adapter, frozen/, "and is held to it, as DeepSpeed-Chat's ref model");
    // a progress bar per step, with its ETA, on stderr
    for (const bar of ["sft", "rm", "ppo"]) assert.match(r.stderr, new RegExp(`^${bar} \\[.*\\| eta `, "m"), `${bar} bar: ${r.stderr.slice(0, 400)}`);

    // each step's output in PEFT's layout loads onto the base
    await loadPeftAdapter(lm.native, lm.config, "sft", join(out(), "step1-sft"));
    await loadPeftAdapter(lm.native, lm.config, "rm", join(out(), "step2-reward-model"));
    await loadPeftAdapter(lm.native, lm.config, "critic", join(out(), "step3-ppo", "critic"));
    await loadPeftAdapter(lm.native, lm.config, "actor", join(out(), "step3-ppo", "actor"));
    assert.ok(lm.native.parameters("rm").some((p) => p.name === "value_head"), "the reward model has its value head");
    assert.equal(readFileSync(join(out(), "step3-ppo", PPO_LOG), "utf8").trim().split("\n").length, PPO_STEPS);

    const svg = readFileSync(join(out(), CURVES_SVG), "utf8");
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const titles = [...svg.matchAll(/<g class="panel" data-title="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(titles, ["reward (reward-model score)", "KL to the reference (nats per answer)", "policy loss", "value loss", "SFT loss", "reward model loss", "reward model pairwise accuracy"]);
    const reward = /data-title="reward \(reward-model score\)"[\s\S]*?<polyline [^>]*points="([^"]+)"/.exec(svg)![1];
    assert.equal(reward.split(" ").length, PPO_STEPS, "one reward point per PPO step");

    // by effect: held-out openings, 400 samples each from the base and the final actor
    const n = 400;
    const base = rate(await sampleStories(lm, HELD_OUT, n / HELD_OUT.length, ANSWER, 100000), DOG);
    const tuned = rate(await sampleStories(lm, HELD_OUT, n / HELD_OUT.length, ANSWER, 100000, "actor"), DOG);
    const p = (base + tuned) / 2;
    const z = (tuned - base) / Math.sqrt((2 * p * (1 - p)) / n);
    t.diagnostic(`dog rate on held-out openings: base ${base}, after the pipeline ${tuned} (z ${z.toFixed(1)})`);
    // two-proportion z > 4 is far beyond what sampling noise gives
    assert.ok(tuned - base >= 0.1 && z > 4, `dog rate: base ${base}, after the pipeline ${tuned} (z ${z.toFixed(1)})`);
    for (const a of ["sft", "rm", "critic", "actor"]) lm.native.removeAdapter(a);
  });

  test("--step 3 reuses steps 1 and 2 from --out and plots their logs too", () => {
    assert.ok(existsSync(join(out(), "step1-sft")), "needs the previous test's run");
    const again = join(dir, "again");
    for (const s of ["step1-sft", "step2-reward-model"]) cpSync(join(out(), s), join(again, s), { recursive: true });
    const r = pipeline(["--prompts", join(dir, "prompts.jsonl"), "--out", again, "--step", "3", "--ppo-epochs", "1", "--ppo-generation-batch", "96", "--ppo-max-answer-tokens", "8"]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.split("\n").filter((l) => /^step \d \(/.test(l)).map((l) => l.slice(0, 6)), ["step 3", "step 3"], "a start line and a summary for step 3 only");
    assert.match(r.stdout, /actor: the SFT adapter; 2 steps of 96 answers/);
    assert.ok(existsSync(join(again, "step3-ppo", "actor", "adapter_model.safetensors")));
    const svg = readFileSync(join(again, CURVES_SVG), "utf8");
    for (const title of ["policy loss", "SFT loss", "reward model pairwise accuracy"]) assert.ok(svg.includes(`data-title="${title}"`), title);
  });

  test("Ctrl-C stops step 3 at a step boundary (exit 130); --resume keeps steps 1 and 2 and continues step 3 from its checkpoint", async () => {
    assert.ok(existsSync(join(out(), "step1-sft")), "needs the first test's run");
    const cut = join(dir, "cut");
    for (const s of ["step1-sft", "step2-reward-model"]) cpSync(join(out(), s), join(cut, s), { recursive: true });
    const args = [CLI, "pipeline", "--model", storiesDir, "--threads", "2", ...files(), "--out", cut, "--ppo-generation-batch", "4", "--ppo-max-answer-tokens", "8"];
    const child = spawn(process.execPath, [...args, "--step", "3"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let signalled = false;
    child.stdout!.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
      if (!signalled && /^ppo step 3:/m.test(stdout)) signalled = child.kill("SIGINT");
    });
    child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 130, stdout + stderr);
    assert.match(stderr, /training interrupted after step \d+; step 3 \(PPO\) did not finish; continue with the same command and --resume/);
    const stopped = Number(/interrupted after step (\d+)/.exec(stderr)![1]);
    const total = (PPO_STEPS * 32) / 4;
    assert.ok(stopped >= 3 && stopped < total, `stopped after ${stopped} of ${total}`);

    const r = spawnSync(process.execPath, [...args, "--resume"], { encoding: "utf8", timeout: 240_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /step 1 \(SFT\): finished before, kept/);
    assert.match(r.stdout, /step 2 \(reward model\): finished before, kept/);
    assert.match(r.stdout, new RegExp(`resuming from .*checkpoint-${stopped} \\(step ${stopped}\\)`));
    const steps = readFileSync(join(cut, "step3-ppo", PPO_LOG), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, Array.from({ length: total }, (_, i) => i + 1), "the log reads as one run");
    assert.ok(existsSync(join(cut, "step3-ppo", "actor", "adapter_config.json")));
  });

  test("a step whose input is missing fails before anything runs, naming the step and the file", () => {
    const empty = join(dir, "empty");
    let r = pipeline(["--prompts", join(dir, "prompts.jsonl"), "--out", empty, "--step", "3"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /step 3 \(PPO\) needs step 1's SFT in .*step1-sft, but .*adapter_config.json does not exist: run step 1 first.*\[missing_step_output\]/);
    // with step 2 asked for too, step 2 does not run first only to fail later
    r = pipeline([...files(), "--out", empty, "--step", "2", "3"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /needs step 1's SFT.*\[missing_step_output\]/);
    assert.ok(!existsSync(empty) || readdirSync(empty).length === 0, "nothing written");
    // step 3 alone, with step 1 there but no reward model
    cpSync(join(out(), "step1-sft"), join(empty, "step1-sft"), { recursive: true });
    r = pipeline(["--prompts", join(dir, "prompts.jsonl"), "--out", empty, "--step", "3"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /needs step 2's reward model in .*step2-reward-model, but .*value_head.safetensors does not exist/);
  });

  test("usage errors exit 2: steps out of order, data a step needs, --help has examples", () => {
    let r = pipeline([...files(), "--out", join(dir, "x"), "--step", "3", "1"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--step takes some of 1 2 3 in order.*got "3 1"/);
    r = pipeline(["--prompts", join(dir, "prompts.jsonl"), "--out", join(dir, "x"), "--step", "1", "3"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--sft-data is required \(the SFT JSONL file, for step 1\)/);
    r = pipeline([...files(), "--out", join(dir, "x"), "--ppo-kl-ctl=-1"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--ppo-kl-ctl must be at least 0/);
    r = spawnSync(process.execPath, [CLI, "pipeline", "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Examples:\n {2}hybridchat pipeline --model/);
  });
});
