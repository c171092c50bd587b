// `--only vs-llama-server`: `hybridchat serve` against llama.cpp's llama-server over HTTP, the
// same GGUF (the 110M model in bf16 by default, written by our converter), the same threads, the
// same load: 8 concurrent clients, each request exactly 64 generated tokens (http-clients.ts).
// Both servers stay up for the whole sitting; rounds alternate (llama-server, then us), and the
// idle one's CPU time over the other's round is recorded, so a busy neighbour would show.
// Medians of the rounds: aggregate generated tokens/s, and per-request latency p50 / p99.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GgufOutType } from "../engine/convert-gguf.js";
import { native } from "../native/index.js";
import { runLoad, servedModel, type LoadRound, type LoadSpec } from "./http-clients.js";
import { startHybridchat, startLlamaServer, type ServerProcess } from "./http-servers.js";
import { findLlamaCpp } from "./llama-cpp/tools.js";
import { benchGguf } from "./models.js";
import { cpuName, fmt, loadAverage, median, quantile, ratio } from "./sitting.js";
import type { Report } from "./report.js";

export interface HttpLoadShape {
  clients: number;
  requestsPerClient: number;
  maxTokens: number;
  prompt: string;
}

/** Issue 17's row: 8 clients × 64 tokens; 4 requests each so a round is 32 answers. */
export const ISSUE_17_LOAD: HttpLoadShape = { clients: 8, requestsPerClient: 4, maxTokens: 64, prompt: "Once upon a time" };

/** One server's rounds reduced to the table's figures (medians over rounds). */
export interface ServerSummary {
  name: string;
  tokensPerS: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  tokensEach: number;
  promptTokens: number;
  /** the server's CPU seconds per 1000 generated tokens (both threads and its HTTP side) */
  cpuSPerKTok: number;
  /** the other, idle server's CPU seconds during this one's rounds, the most of any round (≈ 0 when idle means idle) */
  otherServerCpuS: number;
}

interface TimedRound {
  round: LoadRound;
  cpuS: number;
  otherCpuS: number;
}

/** A round on `server`, with its own CPU time and the idle `other`'s over the same span. */
export async function timedRound(server: ServerProcess, other: ServerProcess | null, spec: LoadSpec): Promise<TimedRound> {
  const [c0, o0] = [server.cpuSeconds(), other?.cpuSeconds() ?? 0];
  const round = await runLoad(spec);
  return { round, cpuS: server.cpuSeconds() - c0, otherCpuS: (other?.cpuSeconds() ?? 0) - o0 };
}

export function summarize(name: string, rounds: readonly TimedRound[]): ServerSummary {
  const r0 = rounds[0]!.round;
  return {
    name,
    tokensPerS: median(rounds.map((t) => t.round.completionTokens / t.round.wallS)),
    p50Ms: median(rounds.map((t) => quantile(t.round.latenciesMs, 0.5))),
    p99Ms: median(rounds.map((t) => quantile(t.round.latenciesMs, 0.99))),
    requests: r0.requests,
    tokensEach: r0.completionTokens / r0.requests,
    promptTokens: r0.promptTokens,
    cpuSPerKTok: median(rounds.map((t) => (1000 * t.cpuS) / t.round.completionTokens)),
    otherServerCpuS: Math.max(...rounds.map((t) => t.otherCpuS)),
  };
}

/** The table row of one server: | server | tok/s | p50 | p99 | requests × tokens | prompt tokens | CPU s / 1k tok | */
export function serverRow(s: ServerSummary): string {
  return `| ${s.name} | ${fmt(s.tokensPerS)} | ${s.p50Ms.toFixed(0)} | ${s.p99Ms.toFixed(0)} | ${s.requests} × ${s.tokensEach} | ${s.promptTokens} | ${s.cpuSPerKTok.toFixed(2)} |`;
}

export const SERVER_TABLE_HEAD = [
  "| server | generated tok/s | latency p50 ms | latency p99 ms | requests × tokens (a round) | prompt tokens | server CPU s / 1k tokens |",
  "| --- | --- | --- | --- | --- | --- | --- |",
];

export interface VsLlamaServerOptions {
  outRoot: string;
  rounds: number;
  threads: number;
  /** a bench model name (bench/models.ts) and GGUF type: 110M bf16 for issue 17's row */
  model: string;
  type: GgufOutType;
  load: HttpLoadShape;
}

export async function runVsLlamaServer(report: Report, o: VsLlamaServerOptions): Promise<void> {
  const ll = findLlamaCpp(["llama-server"]);
  if (!ll) {
    console.log("vs-llama-server: skipped — no llama-server build found; run `WITH_SERVER=1 bench/llama-cpp/build.sh` first (it builds llama-server from node-llama-cpp's bundled source into ~/.cache/hybridchat)");
    return;
  }
  const rounds = Math.max(1, o.rounds);
  const file = await benchGguf(o.outRoot, o.model, o.type);
  const label = `${o.model} ${o.type}`;
  const loads = [loadAverage()];
  console.log(`vs-llama-server: llama.cpp ${ll.version} (${ll.bin}); ${cpuName()}; ${o.threads} threads; ${label}; ${o.load.clients} clients × ${o.load.requestsPerClient} requests × ${o.load.maxTokens} tokens; ${rounds} alternating rounds; load ${loads[0]}`);
  const dataDir = mkdtempSync(join(tmpdir(), "hybridchat-vs-http-"));
  const servers: ServerProcess[] = [];
  try {
    // llama-server: one slot per client, each slot's share of -c room for the prompt and the answer
    const llama = await startLlamaServer({ bin: ll.bin, gguf: file, threads: o.threads, parallel: o.load.clients, contextTokens: o.load.clients * 512 });
    servers.push(llama);
    const ours = await startHybridchat({ model: file, threads: o.threads, maxBatch: o.load.clients, dataDir });
    servers.push(ours);
    const ids = new Map([[llama, await servedModel(llama.url)], [ours, await servedModel(ours.url)]]);
    const spec = (s: ServerProcess, l: HttpLoadShape): LoadSpec => ({ url: s.url, model: ids.get(s)!, ...l });
    // warm-up: a short wave on each (pages the weights in, sizes the buffers, fills the slots)
    for (const s of [llama, ours]) await runLoad(spec(s, { ...o.load, requestsPerClient: 1, maxTokens: 8 }));
    const theirs: TimedRound[] = [];
    const mine: TimedRound[] = [];
    for (let r = 0; r < rounds; r++) {
      theirs.push(await timedRound(llama, ours, spec(llama, o.load)));
      mine.push(await timedRound(ours, llama, spec(ours, o.load)));
      loads.push(loadAverage());
    }
    const [l, h] = [summarize("llama-server", theirs), summarize("hybridchat serve", mine)];
    const config = {
      model: o.model, type: o.type, clients: o.load.clients, requests_per_client: o.load.requestsPerClient, max_tokens: o.load.maxTokens,
      rounds, threads: o.threads, llama_cpp: ll.version,
    };
    report.add({ name: `HTTP ${label} tok/s vs llama-server`, value: h.tokensPerS / l.tokensPerS, unit: "×", config: { ...config, hybridchat_tps: h.tokensPerS, llama_server_tps: l.tokensPerS } });
    report.add({ name: `HTTP ${label} p50 latency vs llama-server`, value: h.p50Ms / l.p50Ms, unit: "×", config: { ...config, hybridchat_ms: h.p50Ms, llama_server_ms: l.p50Ms } });
    report.add({ name: `HTTP ${label} p99 latency vs llama-server`, value: h.p99Ms / l.p99Ms, unit: "×", config: { ...config, hybridchat_ms: h.p99Ms, llama_server_ms: l.p99Ms } });
    console.log(
      [
        "",
        `hybridchat serve vs llama-server (llama.cpp ${ll.version}), ${label} GGUF, kernels ${native().cpuFeatures()} — ${cpuName()} — ${o.threads} threads each; ` +
          `${o.load.clients} concurrent clients, each ${o.load.requestsPerClient} chat completions in turn of exactly ${o.load.maxTokens} tokens (max_tokens + ignore_eos, checked on every answer's usage); ` +
          `medians of ${rounds} alternating rounds; load average during the run: ${loads.join(" → ")}`,
        "",
        ...SERVER_TABLE_HEAD,
        serverRow(h),
        serverRow(l),
        `| ratio hybridchat / llama-server | ${ratio(h.tokensPerS, l.tokensPerS)} | ${ratio(h.p50Ms, l.p50Ms)} | ${ratio(h.p99Ms, l.p99Ms)} | | | ${ratio(h.cpuSPerKTok, l.cpuSPerKTok)} |`,
        "",
        `The idle server's CPU over the other's rounds (at most): hybridchat ${l.otherServerCpuS.toFixed(2)} s during llama-server's, llama-server ${h.otherServerCpuS.toFixed(2)} s during ours.`,
      ].join("\n"),
    );
  } finally {
    for (const s of servers.reverse()) await s.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
