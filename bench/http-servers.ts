// The two servers of the HTTP comparison as their users run them, each a child process on
// 127.0.0.1: `hybridchat serve --model FILE.gguf` and llama.cpp's `llama-server -m FILE.gguf`.
// Each is ready once GET /health answers 200 (both say 503 while the model loads).
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

export interface ServerProcess {
  /** "hybridchat serve" / "llama-server": the table's row label */
  name: string;
  url: string;
  /** user + system CPU seconds the server process has used so far (Linux /proc; NaN elsewhere) */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const START_TIMEOUT_MS = 180_000;
const CLOCK_TICKS = 100; // USER_HZ: /proc/<pid>/stat counts in it on every Linux we run on

function cpuOf(pid: number | undefined): number {
  try {
    // fields after the ")" closing the command name: utime and stime are the 12th and 13th
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** Keeps the last 4 kB of a child's stderr: what a failed start is explained by. */
function tail(child: ChildProcess): () => string {
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-4096)));
  return () => err;
}

async function healthy(child: ChildProcess, url: string, log: () => string, name: string): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < START_TIMEOUT_MS) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited while starting:\n${log()}`);
    const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
    if (ok) return;
    await sleep(200);
  }
  child.kill("SIGKILL");
  throw new Error(`${name} was not healthy after ${START_TIMEOUT_MS / 1000} s:\n${log()}`);
}

function handle(name: string, child: ChildProcess, url: string): ServerProcess {
  return {
    name,
    url,
    cpuSeconds: () => cpuOf(child.pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exit = once(child, "exit");
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exit;
      clearTimeout(killer);
    },
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as { port: number }).port;
  s.close();
  await once(s, "close");
  return port;
}

export interface HybridchatServeOptions {
  /** a checkpoint directory or FILE.gguf */
  model: string;
  threads: number;
  maxBatch: number;
  /** --data-dir: a scratch directory (nothing is stored: --no-store) */
  dataDir: string;
}

/** `hybridchat serve` from this build's dist/, on a port it picks; resolves once healthy. */
export async function startHybridchat(o: HybridchatServeOptions): Promise<ServerProcess> {
  const child = spawn(process.execPath, [
    CLI, "serve", "--model", o.model, "--host", "127.0.0.1", "--port", "0", "--threads", String(o.threads),
    "--max-batch", String(o.maxBatch), "--no-store", "--data-dir", o.dataDir, "--log-level", "warn",
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const log = tail(child);
  const t0 = Date.now();
  let url: string | undefined;
  while (!url) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`hybridchat serve exited while starting:\n${log()}`);
    if (Date.now() - t0 > START_TIMEOUT_MS) {
      child.kill("SIGKILL");
      throw new Error(`hybridchat serve printed no listening line:\n${log()}`);
    }
    url = /listening on (http:\/\/\S+)/.exec(log())?.[1];
    if (!url) await sleep(100);
  }
  await healthy(child, url, log, "hybridchat serve");
  return handle("hybridchat serve", child, url);
}

export interface LlamaServerOptions {
  /** the directory holding llama-server (findLlamaCpp(["llama-server"]).bin) */
  bin: string;
  gguf: string;
  threads: number;
  /** --parallel: slots decoded together (continuous batching, llama-server's default) */
  parallel: number;
  /** -c: KV cells shared by all slots */
  contextTokens: number;
}

/** llama-server as its README runs it, with the threads, slots and context given; resolves once healthy. */
export async function startLlamaServer(o: LlamaServerOptions): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(join(o.bin, "llama-server"), [
    "-m", o.gguf, "--host", "127.0.0.1", "--port", String(port), "-t", String(o.threads), "-tb", String(o.threads),
    "--parallel", String(o.parallel), "-c", String(o.contextTokens), "--no-webui",
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const log = tail(child);
  const url = `http://127.0.0.1:${port}`;
  await healthy(child, url, log, "llama-server");
  return handle("llama-server", child, url);
}
