// The side-by-side benchmarks' own parts, without timing anything: the HTTP comparison's client
// against `hybridchat serve` on the real stories260K (every answer exactly the tokens asked for,
// the round's figures and the table row's shape), the same client against llama-server where
// bench/llama-cpp/build.sh built one, and the 1B-class model path at one layer (config, GGUF,
// our pp/tg runners on it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertToGguf } from "../engine/convert-gguf.js";
import { loadModel } from "../engine/model.js";
import { decodeOnce, prefillOnce } from "../bench/engine-speed.js";
import { runLoad, servedModel, type LoadSpec } from "../bench/http-clients.js";
import { startHybridchat, startLlamaServer, type ServerProcess } from "../bench/http-servers.js";
import { findLlamaCpp } from "../bench/llama-cpp/tools.js";
import { benchConfig, benchGguf, oneBName } from "../bench/models.js";
import { median, quantile } from "../bench/sitting.js";
import { narrowPlan, vsPlan } from "../bench/vs-llama-cpp.js";
import { SERVER_TABLE_HEAD, serverRow, summarize, timedRound } from "../bench/vs-llama-server.js";
import { storiesDir } from "./test-model.js";

// small enough for a test: 2 clients × 2 requests × 8 tokens
const LOAD = { clients: 2, requestsPerClient: 2, maxTokens: 8, prompt: "Once upon a time" };

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), "hybridchat-bench-vs-"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** One round on `server` and the checks every server must pass: exact counts, one latency per answer. */
async function checkedRound(server: ServerProcess) {
  const spec: LoadSpec = { url: server.url, model: await servedModel(server.url), ...LOAD };
  const t = await timedRound(server, null, spec);
  const asked = LOAD.clients * LOAD.requestsPerClient;
  assert.equal(t.round.requests, asked);
  assert.equal(t.round.completionTokens, asked * LOAD.maxTokens, "every answer holds exactly max_tokens");
  assert.equal(t.round.latenciesMs.length, asked);
  assert.ok(t.round.latenciesMs.every((ms) => ms > 0) && t.round.wallS > 0);
  assert.ok(t.round.promptTokens > 0);
  return t;
}

test("the HTTP comparison's client against hybridchat serve (stories260K): exact token counts, the row's shape", async () => {
  const server = await startHybridchat({ model: storiesDir, threads: 2, maxBatch: LOAD.clients, dataDir: join(tmp, "data") });
  try {
    const t = await checkedRound(server);
    assert.ok(t.cpuS > 0, "the server process's CPU time is read from /proc");
    const s = summarize(server.name, [t]);
    assert.equal(s.requests, 4);
    assert.equal(s.tokensEach, LOAD.maxTokens);
    assert.equal(s.tokensPerS, t.round.completionTokens / t.round.wallS);
    const row = serverRow(s);
    const cells = row.split("|").slice(1, -1).map((c) => c.trim());
    assert.equal(cells.length, SERVER_TABLE_HEAD[0]!.split("|").slice(1, -1).length, "one cell per column");
    assert.equal(cells[0], "hybridchat serve");
    assert.equal(cells[4], "4 × 8");
    assert.ok(cells.slice(1, 4).every((c) => Number(c) > 0), row);

    // an answer the server refuses fails the round: no figure from a broken load
    await assert.rejects(runLoad({ url: server.url, model: "no-such-model", ...LOAD }), /HTTP 404/);
  } finally {
    await server.stop();
  }
});

test("the same client against llama-server on the same model as GGUF: llama-server's ignore_eos holds the count too", async (t) => {
  const ll = findLlamaCpp(["llama-server"]);
  if (!ll) return t.skip("no llama-server build (WITH_SERVER=1 bench/llama-cpp/build.sh)");
  const gguf = join(tmp, "stories260K.gguf");
  await convertToGguf({ model: storiesDir, out: gguf, type: "f32" });
  const server = await startLlamaServer({ bin: ll.bin, gguf, threads: 2, parallel: LOAD.clients, contextTokens: 512 });
  try {
    await checkedRound(server);
  } finally {
    await server.stop();
  }
});

test("the 1B-class model at one layer: its config, its q4_0 GGUF, our pp/tg runners", async () => {
  assert.equal(oneBName(16), "1B");
  assert.equal(oneBName(1), "1B-L1");
  assert.equal(benchConfig("1B").num_hidden_layers, 16);
  assert.throws(() => benchConfig("1B-L17"), /1 to 16 layers/);
  assert.deepEqual(vsPlan("1B-L1").types, ["bf16", "q8_0", "q4_0"]);
  assert.throws(() => vsPlan("2B"), /not 110M, 1B/);
  assert.deepEqual(narrowPlan(vsPlan("110M"), ["q4_0", "q8_0"]), { model: "110M", types: ["q8_0", "q4_0"], batchTypes: ["q4_0"] });
  assert.throws(() => narrowPlan(vsPlan("1B"), ["q4_k"]), /1B runs bf16, q8_0, q4_0, not q4_k/);

  const file = await benchGguf(tmp, "1B-L1", "q4_0");
  const m = await loadModel(file, { threads: 2, kvBlocks: 64 });
  try {
    const c = m.config;
    assert.deepEqual(
      [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize, c.vocabSize, c.tieWordEmbeddings],
      [2048, 1, 32, 8, 8192, 32000, false],
    );
    assert.ok((await prefillOnce(m, 8)) > 0);
    assert.ok((await decodeOnce(m, 2, 1)) > 0);
  } finally {
    m.dispose();
  }
});

test("medians and nearest-rank quantiles", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const xs = Array.from({ length: 32 }, (_, i) => 32 - i);
  assert.equal(quantile(xs, 0.5), 16);
  assert.equal(quantile(xs, 0.99), 32, "p99 of 32 answers is the slowest");
  assert.ok(Number.isNaN(median([])));
});
