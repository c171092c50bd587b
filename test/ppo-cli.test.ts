// `hybridchat train ppo` as a user runs it: usage errors, a short run from a fresh actor
// with EMA, then one from the saved actor adapter (its base found from adapter_config.json)
// with the ptx loss, each writing the actor, critic and log.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../engine/model.js";
import { savePeftAdapter } from "../engine/peft.js";
import { PPO_LOG } from "../engine/train/ppo/ppo-run.js";
import { CLI } from "./serve-process.js";
import { saveToyRewardModel } from "./pref-helpers.js";
import { storiesDir } from "./test-model.js";

const run = (args: string[]) => spawnSync(process.execPath, [CLI, "train", "ppo", "--threads", "2", ...args], { encoding: "utf8" });

describe("hybridchat train ppo", () => {
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "hc-ppo-cli-"));
    // a reward model with a non-zero value head (its LoRA B is zero, as PEFT initialises it)
    const lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 16 });
    await saveToyRewardModel(lm, join(dir, "rm"));
    lm.native.addAdapter("plain", { lora: { rank: 2, alpha: 2, dropout: 0, targets: ["q"], seed: 0 }, valueHead: false });
    await savePeftAdapter(lm.native, lm.config, "plain", join(dir, "no-value-head"), { baseModel: storiesDir, spec: { lora: { rank: 2, alpha: 2, dropout: 0, targets: ["q"], seed: 0 }, valueHead: false } });
    lm.dispose();
    writeFileSync(join(dir, "prompts.jsonl"), '{"prompt":"Tom had a pet"}\n{"messages":[{"role":"user","content":"Tell me a story"}]}\n{"prompt":"One day"}\n');
    writeFileSync(join(dir, "ptx.jsonl"), '{"prompt":"Once upon a time","completion":" there was a dog."}\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("usage errors exit 2 and name the option; a reward model without a value head is refused", () => {
    let r = run(["--actor", storiesDir, "--prompts", join(dir, "prompts.jsonl"), "--out", join(dir, "x")]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--reward-model is required/);
    r = run(["--actor", storiesDir, "--reward-model", join(dir, "rm"), "--prompts", join(dir, "prompts.jsonl"), "--out", join(dir, "x"), "--clip-range", "0"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--clip-range must be above 0/);
    r = run(["--actor", storiesDir, "--reward-model", join(dir, "no-value-head"), "--prompts", join(dir, "prompts.jsonl"), "--out", join(dir, "x")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no value head.*\[bad_reward_model\]/);
    r = run(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /--resume .*\n.*bit for bit/);
    assert.match(r.stdout, /Examples:\n {2}hybridchat train ppo --actor/);
  });

  test("a fresh actor with --ema, then the saved actor with --ptx-data: outputs and one log line per step", () => {
    const out = join(dir, "out");
    let r = run(["--actor", storiesDir, "--reward-model", join(dir, "rm"), "--prompts", join(dir, "prompts.jsonl"), "--out", out, "--generation-batch", "2", "--train-batch", "1", "--max-answer-tokens", "12", "--epochs", "2", "--ema"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /actor: a fresh LoRA; 4 steps of 2 answers/);
    for (const f of ["actor/adapter_model.safetensors", "actor_ema/adapter_model.safetensors", "critic/value_head.safetensors"]) assert.ok(existsSync(join(out, f)), f);
    const lines = readFileSync(join(out, PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; ptx_loss: number | null });
    assert.deepEqual(lines.map((l) => l.step), [1, 2, 3, 4]);

    r = run(["--actor", join(out, "actor"), "--reward-model", join(dir, "rm"), "--prompts", join(dir, "prompts.jsonl"), "--out", out]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already holds a PPO run.*\[out_not_empty\]/);

    const out2 = join(dir, "out2");
    r = run(["--actor", join(out, "actor"), "--reward-model", join(dir, "rm"), "--prompts", join(dir, "prompts.jsonl"), "--out", out2, "--max-answer-tokens", "8", "--ptx-data", join(dir, "ptx.jsonl"), "--ppo-epochs", "2", "--whiten-advantages"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /actor: the SFT adapter; 1 step of 3 answers/);
    const [line] = readFileSync(join(out2, PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { ptx_loss: number | null });
    assert.ok(line.ptx_loss !== null && line.ptx_loss > 0);
  });
});
