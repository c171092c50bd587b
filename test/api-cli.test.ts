// The `hybridchat` command as a user runs it: `serve` in a child process answering on a
// port (and stopping on SIGTERM/SIGINT), `init` writing a checkpoint that loads.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../engine/model.js";
import { README, testModelDir, waitFor } from "./api-helpers.js";
import { CLI, readmeAnswer, serve, stop } from "./serve-process.js";
import { HELPS } from "../cli/help-index.js";

const tmpRoots: string[] = [];
after(async () => {
  for (const d of tmpRoots) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "hybridchat-cli-"));
  tmpRoots.push(d);
  return d;
}

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("hybridchat serve", () => {
  test("--model DIR answers on its port with the README output; SIGTERM exits 0", async () => {
    // --no-store: this test keeps nothing (there is no --data-dir to put it in)
    const s = await serve(["--model", testModelDir, "--no-store"]);
    try {
      assert.equal(await readmeAnswer(s.url), README.continuation);
      assert.doesNotMatch(s.stderr(), /UNTRAINED/);
      // the ready line follows /health's 200 by a moment
      await waitFor(() => /storing nothing \(--no-store\)/.test(s.stderr()), "the ready line");
      const stored = await fetch(`${s.url}/v1/chat/completions`);
      assert.equal(stored.status, 404);
      assert.equal(((await stored.json()) as { error: { code: string } }).error.code, "store_disabled");
    } finally {
      assert.equal(await stop(s, "SIGTERM"), 0, s.stderr());
    }
  });

  test("the README's first command (no --model) serves the pretrained stories260K: it answers in English", async () => {
    // the default is found where the package keeps it; here the variable points at the tests' copy
    const s = await serve(["--data-dir", await tmp()], { HYBRIDCHAT_DEFAULT_MODEL: testModelDir });
    try {
      assert.match(s.stderr(), /no --model given: serving the bundled pretrained TinyStories 260K Llama/);
      assert.doesNotMatch(s.stderr(), /UNTRAINED/);
      const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string }[] };
      assert.deepEqual(models.data.map((m) => m.id), ["stories260K"]);
      // the greedy continuation of "Once upon a time" from the model's README
      assert.equal(await readmeAnswer(s.url), README.continuation);
      assert.match(README.continuation, /^, there was a little girl named Lily\. She loved to play outside in the park\./);
      await waitFor(() => /chat template: tokenizer_config\.json/.test(s.stderr()), "the ready line naming the template file");
    } finally {
      assert.equal(await stop(s, "SIGTERM"), 0, s.stderr());
    }
  });

  test("without --model and no pretrained default: the built-in tiny model, announced loudly as UNTRAINED; --served-model-name; SIGINT exits 0", async () => {
    const dataDir = await tmp();
    const s = await serve(["--data-dir", dataDir, "--served-model-name", "demo"], { HYBRIDCHAT_DEFAULT_MODEL: join(dataDir, "no-model-here") });
    try {
      assert.match(s.stderr(), /no pretrained default found \(looked in .*no-model-here/);
      assert.match(s.stderr(), /UNTRAINED/);
      const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string }[] };
      assert.deepEqual(models.data.map((m) => m.id), ["demo"]);
      const r = await fetch(`${s.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "demo", messages: [{ role: "user", content: "hello" }], max_tokens: 5 }),
      });
      assert.equal(r.status, 200);
      const body = (await r.json()) as { usage: { completion_tokens: number } };
      assert.ok(body.usage.completion_tokens >= 1 && body.usage.completion_tokens <= 5);
    } finally {
      assert.equal(await stop(s, "SIGINT"), 0, s.stderr());
    }
  });

  test("bad options exit 2 with a message that says what to do", () => {
    const port = run(["serve", "--port", "80x"]);
    assert.equal(port.status, 2);
    assert.match(port.stderr, /--port must be an integer/);
    assert.match(port.stderr, /hybridchat serve --help/);
    const dir = run(["serve", "--model", join(tmpdir(), "hybridchat-definitely-missing")]);
    assert.equal(dir.status, 2);
    assert.match(dir.stderr, /no such directory/);
    const unknown = run(["serve", "--modle", "x"]);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /--modle/);
    const adapterSpec = run(["serve", "--adapter", "no-equals-sign"]);
    assert.equal(adapterSpec.status, 2);
    assert.match(adapterSpec.stderr, /--adapter no-equals-sign: expected NAME=DIR/);
    const adapterDir = run(["serve", "--adapter", `a=${join(tmpdir(), "hybridchat-no-adapter-here")}`]);
    assert.equal(adapterDir.status, 2);
    assert.match(adapterDir.stderr, /--adapter a=.*no such directory/);
    const precision = run(["serve", "--matmul-precision", "fast"]);
    assert.equal(precision.status, 2);
    assert.match(precision.stderr, /--matmul-precision must be one of auto, highest, high, medium, got "fast"/);
    const precisionTp = run(["serve", "--matmul-precision", "medium", "--tensor-parallel", "2"]);
    assert.equal(precisionTp.status, 2);
    assert.match(precisionTp.stderr, /--matmul-precision medium runs on --device cpu with --tensor-parallel 1 only/);
    const cmd = run(["serv"]);
    assert.equal(cmd.status, 2);
    assert.match(cmd.stderr, /unknown command "serv"/);
  });

  test("--help for the program and every command and subcommand, with examples; `help X` says the same", () => {
    for (const topic of Object.keys(HELPS)) {
      const words = topic ? topic.split(" ") : [];
      const r = run([...words, "--help"]);
      assert.equal(r.status, 0, `${topic}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: hybridchat/, topic);
      assert.match(r.stdout, /\nExamples?:\n {2}(\S+=\S+ )?hybridchat /, `${topic}: an example`);
      assert.equal(r.stdout, HELPS[topic], topic);
      assert.equal(run(["help", ...words]).stdout, r.stdout, `help ${topic}`);
    }
    assert.match(run(["serve", "--help"]).stdout, /--served-model-name/);
    assert.match(run(["init", "-h"]).stdout, /--preset NAME/);
  });

  test("a mistyped command, method or flag: exit 2, the nearest known one, and which --help to read", () => {
    const cases: [string[], RegExp, string][] = [
      [["serv"], /unknown command "serv" \(did you mean serve\?\); commands: serve, init, quantize, convert, train, pipeline, chat/, "hybridchat --help"],
      [["help", "trian"], /no help for "trian" \(did you mean train\?\)/, "hybridchat --help"],
      [["train", "sfx"], /unknown training method "sfx" \(did you mean sft\?\)/, "hybridchat train --help"],
      [["serve", "--modle", "x"], /unknown option --modle \(did you mean --model\?\)/, "hybridchat serve --help"],
      [["train", "sft", "--dta", "x"], /unknown option --dta \(did you mean --data\?\)/, "hybridchat train sft --help"],
      [["train", "ppo", "--actr", "x"], /unknown option --actr \(did you mean --actor\?\)/, "hybridchat train ppo --help"],
      [["chat", "--urll", "x"], /unknown option --urll \(did you mean --url\?\)/, "hybridchat chat --help"],
      [["init", "--zzzzzz"], /unknown option --zzzzzz\n/, "hybridchat init --help"],
    ];
    for (const [args, message, help] of cases) {
      const r = run(args);
      assert.equal(r.status, 2, args.join(" "));
      assert.match(r.stderr, message, args.join(" "));
      assert.ok(r.stderr.includes(`Run \`${help}\` for usage.`), r.stderr);
    }
  });
});

describe("hybridchat init", () => {
  test("--preset writes a checkpoint that loads; the same seed writes the same weights", async () => {
    const root = await tmp();
    const a = join(root, "a");
    const b = join(root, "b");
    const r = run(["init", "--preset", "tiny", "--out", a, "--seed", "5"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /hybridchat serve --model/);
    assert.equal(run(["init", "--preset", "tiny", "--out", b, "--seed", "5"]).status, 0);
    assert.ok((await readFile(join(a, "model.safetensors"))).equals(await readFile(join(b, "model.safetensors"))));
    const model = await loadModel(a, { threads: 1 });
    try {
      assert.equal(model.untrained, true);
      assert.equal(model.config.hiddenSize, 64);
    } finally {
      model.dispose();
    }
    // refuses to overwrite without --force
    const again = run(["init", "--preset", "tiny", "--out", a]);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /--force/);
    assert.equal(run(["init", "--preset", "tiny", "--out", a, "--force", "--dtype", "bf16"]).status, 0);
    const bf = await loadModel(a, { threads: 1 });
    bf.dispose();
  });

  test("a big checkpoint's write is followed on stderr (no terminal: start, end); a small one's is not", async () => {
    const root = await tmp();
    const cfg = join(root, "config.json");
    // 13.7M parameters: 52 MiB in f32, over the 32 MiB a bar needs
    const shape = { architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 512, intermediate_size: 1408, num_hidden_layers: 3 };
    await writeFile(cfg, JSON.stringify({ ...shape, num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 8000, max_position_embeddings: 256, tie_word_embeddings: true }));
    const big = run(["init", "--config", cfg, "--out", join(root, "big")]);
    assert.equal(big.status, 0, big.stderr);
    assert.match(big.stderr, /^writing model\.safetensors \(52\.4 MiB\)\n(.*\n)*wrote model\.safetensors \(52\.4 MiB\) in \d+\.\d s\n$/);
    const small = run(["init", "--preset", "tiny", "--out", join(root, "small")]);
    assert.equal(small.status, 0, small.stderr);
    assert.equal(small.stderr, "");
  });

  test("--config FILE.json and its errors", async () => {
    const root = await tmp();
    const cfg = join(root, "config.json");
    await writeFile(
      cfg,
      JSON.stringify({
        architectures: ["LlamaForCausalLM"],
        model_type: "llama",
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 400,
        max_position_embeddings: 64,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
      }),
    );
    const out = join(root, "m");
    const ok = run(["init", "--config", cfg, "--out", out, "--dtype", "f16"]);
    assert.equal(ok.status, 0, ok.stderr);
    const m = await loadModel(out, { threads: 1 });
    assert.equal(m.config.numLayers, 2);
    assert.equal(m.config.tieWordEmbeddings, false);
    m.dispose();

    const bad = join(root, "bad.json");
    await writeFile(bad, "{nope");
    const r1 = run(["init", "--config", bad, "--out", join(root, "x")]);
    assert.equal(r1.status, 2);
    assert.match(r1.stderr, /not valid JSON/);
    const r2 = run(["init", "--preset", "nope", "--out", join(root, "y")]);
    assert.equal(r2.status, 2);
    assert.match(r2.stderr, /known presets: .*tiny/);
    const r3 = run(["init", "--preset", "tiny"]);
    assert.equal(r3.status, 2);
    assert.match(r3.stderr, /--out DIR is required/);
    const r4 = run(["init", "--preset", "tiny", "--out", join(root, "z"), "--dtype", "f64"]);
    assert.equal(r4.status, 2);
    assert.match(r4.stderr, /--dtype must be one of f32, bf16, f16/);
    const r5 = run(["init", "--config", join(root, "missing.json"), "--out", join(root, "w")]);
    assert.equal(r5.status, 2);
    assert.match(r5.stderr, /no such file/);
  });
});
