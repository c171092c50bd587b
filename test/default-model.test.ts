// The pretrained default `serve` runs without --model (engine/default-model.ts): where it is
// looked for, and the prepack step that puts it into the package (scripts/bundle-default-model.mjs)
// with its licence and source note — into a gitignored folder that `npm pack` still ships.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_ENV, findDefaultModel, PACKAGE_ROOT } from "../engine/default-model.js";
import { loadModel } from "../engine/model.js";
import { encodeChat } from "../engine/chat-template.js";
import { repoRoot, storiesDir } from "./test-model.js";

const tmp = mkdtempSync(join(tmpdir(), "hc-default-model-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("looked for at $HYBRIDCHAT_DEFAULT_MODEL, else ../shared/models/stories260K, else models/stories260K in the package", () => {
  assert.equal(PACKAGE_ROOT, repoRoot);
  const pkg = join(tmp, "order", "pkg");
  const sibling = join(tmp, "order", "shared", "models", "stories260K");
  const inside = join(pkg, "models", "stories260K");
  mkdirSync(pkg, { recursive: true });
  assert.deepEqual(findDefaultModel({}, pkg), { dir: null, looked: [sibling, inside] });
  cpSync(storiesDir, inside, { recursive: true });
  assert.equal(findDefaultModel({}, pkg).dir, inside);
  cpSync(storiesDir, sibling, { recursive: true });
  assert.equal(findDefaultModel({}, pkg).dir, sibling);
  // a set variable is the only place looked: pointing it at nothing forces the random built-in
  assert.equal(findDefaultModel({ [DEFAULT_MODEL_ENV]: inside }, pkg).dir, inside);
  assert.deepEqual(findDefaultModel({ [DEFAULT_MODEL_ENV]: join(tmp, "nothing") }, pkg), { dir: null, looked: [join(tmp, "nothing")] });
});

test("prepack copies the model with its licence and source note; git ignores it, npm pack keeps it; it talks", { timeout: 120_000 }, async () => {
  const pkg = join(tmp, "packed");
  const run = spawnSync(process.execPath, [join(repoRoot, "scripts", "bundle-default-model.mjs"), pkg], {
    encoding: "utf8",
    env: { ...process.env, [DEFAULT_MODEL_ENV]: storiesDir },
  });
  assert.equal(run.status, 0, run.stderr);
  const dir = join(pkg, "models", "stories260K");
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "LICENSE", "SOURCE.md", "README.md"]) {
    assert.ok(existsSync(join(dir, f)), f);
  }
  assert.match(readFileSync(join(dir, "LICENSE"), "utf8"), /^MIT License/);
  assert.match(readFileSync(join(dir, "SOURCE.md"), "utf8"), /karpathy\/tinyllamas/);
  assert.deepEqual(readFileSync(join(dir, "model.safetensors")), readFileSync(join(storiesDir, "model.safetensors")));
  assert.equal(findDefaultModel({}, pkg).dir, dir);

  // never history: git ignores the folder; npm does not (.npmignore lists everything else .gitignore does)
  const ignored = spawnSync("git", ["check-ignore", "-q", "models/stories260K/model.safetensors"], { cwd: repoRoot });
  assert.equal(ignored.status, 0, "git ignores models/");
  const npmignore = readFileSync(join(repoRoot, ".npmignore"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
  const gitignore = readFileSync(join(repoRoot, ".gitignore"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
  assert.deepEqual(npmignore, gitignore.filter((l) => l !== "/models/"));
  assert.match((JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts.prepack!, /bundle-default-model\.mjs/);

  // what it serves: English
  const model = await loadModel(dir, { threads: 2 });
  try {
    const toks = encodeChat(model, [{ role: "user", content: "Once upon a time" }]);
    for (let i = 0; i < 12; i++) {
      const logits = await model.native.forward({ seqIds: Int32Array.of(0), tokens: Int32Array.from(i === 0 ? toks : [toks.at(-1)!]), counts: Int32Array.of(i === 0 ? toks.length : 1), logits: "last" });
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      toks.push(best);
    }
    assert.equal(model.tokenizer.decode(toks, true), "Once upon a time, there was a little girl named Lily. She");
  } finally {
    model.dispose();
  }
});
