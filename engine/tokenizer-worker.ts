// The worker thread of engine/tokenizer-thread.ts: the same tokenizer, loaded from the
// same checkpoint directory, encoding long prompts so the event loop never does.
import { parentPort, workerData } from "node:worker_threads";
import { loadTokenizer } from "./tokenizer.js";
import { serveWorkerCalls } from "./worker-calls.js";
import type { TokenizeRequest } from "./tokenizer-thread.js";

const tokenizer = loadTokenizer((workerData as { dir: string }).dir);
serveWorkerCalls<TokenizeRequest, Int32Array>(parentPort!, (q) => {
  const ids = Int32Array.from(tokenizer.encode(q.text, q.addSpecialTokens));
  return { result: ids, transfer: [ids.buffer as ArrayBuffer] };
});
