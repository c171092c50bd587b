// llama-server's load test on our server: autocannon against /v1/chat/completions over
// real HTTP on 127.0.0.1, same model, prompt size and connection count as the anchor.
import autocannon from "autocannon";
import { HybridchatServer } from "../server/server.js";
import type { Report } from "./report.js";

export interface HttpCase {
  modelDir: string;
  connections: number;
  durationS: number;
  maxTokens: number;
  threads: number;
}

export async function runHttp(report: Report, c: HttpCase): Promise<void> {
  const server = new HybridchatServer({ model: c.modelDir, threads: c.threads, maxBatch: 8, logger: false });
  const url = await server.listen({ host: "127.0.0.1", port: 0 });
  try {
    await server.ready;
    const body = JSON.stringify({
      model: server.model!.id,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: c.maxTokens,
      temperature: 0.8,
      ignore_eos: true,
    });
    const result = await autocannon({
      url: `${url}/v1/chat/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      connections: c.connections,
      duration: c.durationS,
    });
    const ok = result.requests.total - result.non2xx - result.errors;
    const config = { model: server.model!.id, connections: c.connections, duration_s: c.durationS, max_tokens: c.maxTokens, errors: result.errors + result.non2xx };
    report.add({ name: `HTTP chat completions req/s`, value: ok / c.durationS, unit: "req/s", config });
    report.add({ name: `HTTP generated tokens/s`, value: (ok * c.maxTokens) / c.durationS, unit: "tok/s", config });
    report.add({ name: `HTTP latency p50`, value: result.latency.p50, unit: "ms", config });
    report.add({ name: `HTTP latency p99`, value: result.latency.p99, unit: "ms", config });
  } finally {
    await server.close();
  }
}
