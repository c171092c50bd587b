// The README's and docs/*.md's examples. The SDK code blocks marked `<!-- runs -->` are
// type-checked as TypeScript against the package's types and run as a reader would run them —
// as they are, in a child process — against a local server with a real store; only the
// package name (to this checkout's build) and the server's address are rewritten. Every
// `hybridchat …` command line (shell blocks and inline code) names a command that exists and
// only flags its `--help` lists (the pipeline's --sft-/--rm-/--ppo- flags: the step's own).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "./api-helpers.js";
import { nameChangeData } from "./sft-helpers.js";
import { serveWithStore, type StoreServing } from "./store-helpers.js";

/** The fenced blocks that directly follow a `<!-- runs -->` line. */
function runnableBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^<!-- runs -->\n```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

let s: StoreServing;
before(async () => {
  s = await serveWithStore();
  // the second example's training file, made with the model before it serves anything
  await nameChangeData(s.model, join(s.dir, "names.jsonl"), 4);
});
after(async () => {
  await s?.close();
});

/** Runs the example (asynchronously: the server answering it lives in this process). */
async function runExample(example: string, name: string): Promise<string> {
  const file = join(s.dir, `${name}.mjs`);
  const source = example
    .replaceAll('from "hybridchat"', `from ${JSON.stringify(pathToFileURL(join(repoRoot, "dist", "index.js")).href)}`)
    .replaceAll("http://127.0.0.1:8000", s.baseUrl);
  writeFileSync(file, source);
  const child = spawn(process.execPath, [file], { cwd: s.dir, env: { ...process.env, HYBRIDCHAT_API_KEY: "" } });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const code = await new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
  assert.equal(code, 0, `${name} failed:\n${stderr}\n--- the example ---\n${source}`);
  return stdout;
}

/** README.md and every docs page, in a fixed order */
const pages = ["README.md", ...readdirSync(join(repoRoot, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => join("docs", f))];
const markdown = new Map(pages.map((p) => [p, readFileSync(join(repoRoot, p), "utf8")]));
const blocks = pages.flatMap((p) => runnableBlocks(markdown.get(p)!));

const COMMANDS = ["serve", "init", "chat", "train", "pipeline", "keys", "help"];

/** Every `hybridchat …` command line: in sh blocks (continued lines joined, comments cut) and in inline code. */
function commandLines(md: string): string[] {
  const found: string[] = [];
  const take = (line: string): void => {
    const m = new RegExp(`\\bhybridchat (${COMMANDS.join("|")})\\b(.*)$`).exec(line);
    if (m) found.push(`${m[1]}${m[2]}`.trim());
  };
  for (const b of md.matchAll(/^```sh\n([\s\S]*?)^```$/gm))
    for (const line of b[1]!.replace(/\\\n\s*/g, " ").split("\n")) take(line.replace(/(^|\s)#.*$/, ""));
  for (const c of md.matchAll(/`((?:npx )?hybridchat [^`]+)`/g)) take(c[1]!);
  return found;
}

const helpCache = new Map<string, string>();
function helpOf(args: string[]): string {
  const key = args.join(" ");
  if (!helpCache.has(key)) {
    const r = spawnSync(process.execPath, [join(repoRoot, "dist", "cli", "main.js"), ...args, "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, `hybridchat ${key} --help: ${r.stderr}`);
    helpCache.set(key, r.stdout);
  }
  return helpCache.get(key)!;
}
const lists = (help: string, flag: string): boolean => new RegExp(`--${flag.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w-])`).test(help);

test("every hybridchat command line in the README and docs names a command and only flags its --help lists", () => {
  let checked = 0;
  for (const [page, md] of markdown)
    for (const line of commandLines(md)) {
      const words = line.split(/\s+/).map((w) => w.replace(/^\[|\]$/g, ""));
      const [command, method] = words;
      const args = command === "train" || command === "keys" ? [command!, method!].filter((w) => w !== undefined && !w.startsWith("-")) : command === "help" ? words.slice(1).filter((w) => !w.startsWith("-")) : [command!];
      const help = helpOf(args);
      for (const w of words.filter((x) => x.startsWith("--"))) {
        const flag = w.slice(2).split("=")[0]!;
        // the pipeline passes --sft-…, --rm-…, --ppo-… through to that step's own flags
        const step = command === "pipeline" ? /^(sft|rm|ppo)-(.+)$/.exec(flag) : null;
        const ok = lists(help, flag) || (step !== null && lists(helpOf(["train", step[1]!]), step[2]!));
        assert.ok(ok, `${page}: \`hybridchat ${line}\` — --${flag} is not among \`hybridchat ${args.join(" ")} --help\`'s flags`);
      }
      checked++;
    }
  assert.ok(checked >= 20, `only ${checked} command lines found: the extraction broke`);
});

test("the docs have the SDK examples this test runs, and they type-check against the package's types", () => {
  assert.equal(blocks.length, 2, "a marked block was added or lost: update this test");
  for (const b of blocks) assert.match(b, /from "hybridchat"/);
  const dir = mkdtempSync(join(tmpdir(), "hc-readme-ts-"));
  try {
    const files = blocks.map((b, i) => {
      writeFileSync(join(dir, `example-${i}.mts`), b);
      return `example-${i}.mts`;
    });
    const compilerOptions = {
      module: "NodeNext",
      target: "ES2022",
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [join(repoRoot, "node_modules", "@types")],
      // `import … from "hybridchat"` as an installed package resolves it: this build's types
      paths: { hybridchat: [join(repoRoot, "dist", "index.d.ts")] },
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files }));
    const tsc = spawnSync(process.execPath, [join(repoRoot, "node_modules", "typescript", "bin", "tsc"), "-p", dir], { encoding: "utf8" });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the chat and feedback example: its ratings, correction and preference are stored", async () => {
  const out = await runExample(blocks[0]!, "chat-and-feedback");
  assert.match(out, /^1 preference lines$/m);
  const fb = (await (await fetch(`${s.baseUrl}/v1/feedback?limit=100`)).json()) as { data: { type: string }[] };
  assert.deepEqual(fb.data.map((f) => f.type).sort(), ["correction", "preference", "rating"]);
});

test("the jobs example: steps stream in, the version is promoted and rolled back", { timeout: 180_000 }, async () => {
  const out = await runExample(blocks[1]!, "jobs-and-versions");
  const steps = [...out.matchAll(/^step (\d+) loss (\d\S*)$/gm)].map((m) => Number(m[1]));
  assert.ok(steps.length >= 2 && steps.every((n, i) => n === i + 1), `one line per step, in order:\n${out}`);
  assert.match(out, /^succeeded$/m);
  assert.match(out, /^serves ft:stories260K:names:ftjob-\S+\nserves stories260K$/m);
  const models = (await (await fetch(`${s.baseUrl}/v1/models`)).json()) as { data: { id: string; serves?: string }[] };
  assert.equal(models.data.find((m) => m.id === "stories260K")!.serves, "stories260K");
});
