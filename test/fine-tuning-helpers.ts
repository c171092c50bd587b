// Shared by the fine-tuning tests: a server on the real model with a data dir, the
// official client, the name-change data set as an upload, greedy text through the API,
// and job polling. (No tests here.)
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import type { FineTuningJob } from "openai/resources/fine-tuning/jobs/jobs";
import { createServer, type HybridchatServer, type ServerOptions } from "../server/server.js";
import { testModelDir } from "./api-helpers.js";
import { nameChangeData } from "./sft-helpers.js";

export const MODEL = "stories260K";

export interface FtServer {
  server: HybridchatServer;
  url: string;
  client: OpenAI;
}

/**
 * A server for a test file on a fresh temporary directory (the data dir is its "data"):
 * started before the file's tests (handed to `set`), closed and the directory removed after.
 * Returns the directory.
 */
export function serverForFile(prefix: string, set: (s: FtServer) => void, more: Partial<ServerOptions> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let s: FtServer | undefined;
  before(async () => {
    s = await startServer(join(dir, "data"), more);
    set(s);
  });
  after(async () => {
    await s?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export async function startServer(dataDir: string, more: Partial<ServerOptions> = {}): Promise<FtServer> {
  const server = createServer({ model: testModelDir, dataDir, threads: 2, ...more });
  const url = await server.listen({ port: 0 });
  await server.ready;
  return { server, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 }) };
}

/** The name-change JSONL (test/sft-helpers.ts), made with the served model before it serves anything. */
export async function uploadNameChange(s: FtServer, file: string): Promise<string> {
  await nameChangeData(s.server.model!, file);
  const f = await s.client.files.create({ file: createReadStream(file), purpose: "fine-tune" });
  return f.id;
}

/** Greedy text completion of `prompt` by `model`, through the API. */
export async function greedy(client: OpenAI, model: string, prompt: string, maxTokens = 8): Promise<string> {
  const r = await client.completions.create({ model, prompt, max_tokens: maxTokens, temperature: 0 });
  return r.choices[0]!.text;
}

/** Polls the job until its status is one of `statuses` (the test's timeout bounds the wait). */
export async function waitForJob(client: OpenAI, id: string, statuses: readonly FineTuningJob["status"][]): Promise<FineTuningJob> {
  for (;;) {
    const j = await client.fineTuning.jobs.retrieve(id);
    if (statuses.includes(j.status)) return j;
    await sleep(20);
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
