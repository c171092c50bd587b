// `hybridchat serve` in a child process, as a user runs it (shared by the CLI and crash
// tests; no tests here).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { repoRoot, waitFor } from "./api-helpers.js";

export const CLI = join(repoRoot, "dist", "cli", "main.js");

export interface Served {
  child: ChildProcess;
  url: string;
  stderr: () => string;
}

/** Starts `hybridchat serve` on a free port (with `env` added to this process's); resolves once /health says 200. */
export async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--log-level", "warn", "--threads", "2", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
  let exited = false;
  child.once("exit", () => (exited = true));
  await waitFor(() => exited || /listening on (http:\/\/\S+)/.test(err), "the listening line", 60_000);
  const m = /listening on (http:\/\/\S+)/.exec(err);
  assert.ok(m, `serve did not start: ${err}`);
  const url = m[1]!;
  let healthy = false;
  while (!healthy && !exited) healthy = (await fetch(`${url}/health`)).status === 200;
  assert.ok(healthy, err);
  return { child, url, stderr: () => err };
}

/** The served stories260K's greedy answer to the README's chat request (README.continuation). */
export async function readmeAnswer(url: string): Promise<string> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], temperature: 0, max_tokens: 57 }),
  });
  assert.equal(r.status, 200);
  return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
}

/** Sends `signal` and resolves with the exit code (null when killed by the signal). */
export async function stop(s: Served, signal: NodeJS.Signals): Promise<number | null> {
  const exit = once(s.child, "exit");
  s.child.kill(signal);
  const [code] = (await exit) as [number | null];
  return code;
}
