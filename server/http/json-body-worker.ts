// The worker of server/http/json-body.ts: parses a large JSON body, refusing the keys
// Fastify's own parser refuses (prototype poisoning: `__proto__`, `constructor.prototype`).
import { parentPort } from "node:worker_threads";
import { serveWorkerCalls } from "../../engine/worker-calls.js";

const decoder = new TextDecoder("utf-8");

function guard(key: string, v: unknown): unknown {
  if (key === "__proto__") throw new SyntaxError("Object contains forbidden prototype property");
  if (key === "constructor" && v !== null && typeof v === "object" && Object.hasOwn(v, "prototype"))
    throw new SyntaxError("Object contains forbidden prototype property");
  return v;
}

serveWorkerCalls<Uint8Array, unknown>(parentPort!, (bytes) => {
  const text = decoder.decode(bytes);
  // a reviver makes parsing several times slower: only text that could spell one of the
  // keys (directly or through \u escapes) pays for it
  const suspect = text.includes("__proto__") || text.includes("constructor") || text.includes("\\u");
  return { result: suspect ? JSON.parse(text, guard) : JSON.parse(text) };
});
