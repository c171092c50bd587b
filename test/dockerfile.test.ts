// The Dockerfile, checked without docker (none runs here): its stages and user, that what the
// runtime stage copies is what the build makes, and that its command — the CLI with CMD's
// flags — refuses to listen without keys, and with keys serves and passes its HEALTHCHECK.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "./api-helpers.js";
import { serve, stop } from "./serve-process.js";

const lines = readFileSync(join(repoRoot, "Dockerfile"), "utf8")
  .split("\n")
  .filter((l) => l.trim() && !l.startsWith("#"));
const stages = lines.map((l, i) => (l.startsWith("FROM ") ? i : -1)).filter((i) => i >= 0);
const runtime = lines.slice(stages.at(-1));
const instruction = (name: string): string[] => runtime.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1));
const execForm = (name: string): string[] => JSON.parse(instruction(name)[0]!) as string[];
// the runtime stage's ENV lines (KEY=VALUE each), as the container's process sees them
const imageEnv = (): Record<string, string> => Object.fromEntries(instruction("ENV").map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));

test("multi-stage; the runtime runs as a non-root user with /data as a volume and a health check", () => {
  assert.ok(stages.length >= 2, "a build stage and a runtime stage");
  assert.deepEqual(instruction("USER"), ["node"]);
  assert.deepEqual(instruction("VOLUME"), ['["/data"]']);
  assert.equal(instruction("HEALTHCHECK").length, 1);
});

test("what the runtime stage copies from the build is what `npm ci` makes (here: the same build)", () => {
  const copied = instruction("COPY").filter((c) => c.startsWith("--from=build "));
  assert.ok(copied.length >= 5);
  for (const c of copied) {
    const src = c.split(/\s+/)[1]!;
    assert.ok(src.startsWith("/app/"), c);
    assert.ok(existsSync(join(repoRoot, src.slice("/app/".length))), `${src}: not made by the build`);
  }
  const [node, entry] = execForm("ENTRYPOINT");
  assert.equal(node, "node");
  assert.ok(existsSync(join(repoRoot, entry!)), entry);
});

test("CMD without API keys is refused with what to do; with HYBRIDCHAT_API_KEYS and the image's ENV it serves and HEALTHCHECK passes", async () => {
  const [, entry] = execForm("ENTRYPOINT");
  const cmd = execForm("CMD");
  assert.equal(cmd[0], "serve");
  const dataDir = mkdtempSync(join(tmpdir(), "hc-docker-"));
  // the image's flags, on a free port and a temp data directory
  const flags = cmd.slice(1).map((v, i, a) => (a[i - 1] === "--port" ? "0" : a[i - 1] === "--data-dir" ? dataDir : v));
  try {
    const refused = spawnSync(process.execPath, [join(repoRoot, entry!), "serve", ...flags], { encoding: "utf8", env: { ...process.env, HYBRIDCHAT_API_KEYS: "" } });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0 without API keys.*HYBRIDCHAT_API_KEYS=KEY:admin/);

    process.env.HYBRIDCHAT_API_KEYS = "docker-admin-key-1234:admin";
    const env = imageEnv();
    assert.match(env.GLIBC_TUNABLES ?? "", /^glibc\.malloc\.mmap_threshold=\d+:glibc\.malloc\.trim_threshold=\d+$/);
    const s = await serve(flags, env).finally(() => delete process.env.HYBRIDCHAT_API_KEYS);
    try {
      const port = new URL(s.url).port;
      const check = instruction("HEALTHCHECK")[0]!.replace(/^.*CMD /, "");
      const script = /^node -e "(.*)"$/.exec(check)![1]!.replace("127.0.0.1:8000", `127.0.0.1:${port}`);
      const health = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
      assert.equal(health.status, 0, health.stderr);
      assert.ok(existsSync(join(dataDir, "hybridchat.sqlite")), "the state is kept in the volume");
    } finally {
      assert.equal(await stop(s, "SIGTERM"), 0, s.stderr());
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
