// Issue 16 item 1: no prompt may stall the server. A prompt far longer than the context is
// refused by its character count before any tokenization; a long prompt that might fit is
// tokenized on the tokenizer thread. Meanwhile small chats on the same server stay fast
// (compared with their latency on the idle server, measured in the same test).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { serveModel, type TestServing } from "./api-helpers.js";
import { TokenizerThread } from "../engine/tokenizer-thread.js";
import { loadTokenizer } from "../engine/tokenizer.js";
import { storiesDir } from "./test-model.js";
import { SYNC_TOKENIZE_CHARS } from "../server/serving/prompt-tokens.js";
import { execFile } from "node:child_process";

const MODEL = "stories260K";
let s: TestServing;
let url: string;

before(async () => {
  // a body limit above the prompts sent, so the prompt check (not the 413) answers
  s = await serveModel({ app: { maxBodyBytes: 32 * 1024 * 1024 } });
  url = await s.app.listen({ host: "127.0.0.1", port: 0 });
});
after(async () => {
  await s.close();
});

async function post(path: string, body: string): Promise<{ status: number; json: any; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url + path, { method: "POST", headers: { "content-type": "application/json" }, body });
  const json = await res.json();
  return { status: res.status, json, ms: performance.now() - t0 };
}

/**
 * The same POST from another process, so building and sending a 10 MB body costs this
 * process (which also runs the server) nothing: what the small chats see is the server's work.
 */
function postFromChild(path: string, body: string): Promise<{ status: number; json: any; ms: number }> {
  const script = `
    const body = JSON.stringify({ model: "${MODEL}", messages: [{ role: "user", content: ${JSON.stringify(body)}.repeat(300000) }] });
    const t0 = performance.now();
    fetch(${JSON.stringify(url + path)}, { method: "POST", headers: { "content-type": "application/json" }, body })
      .then(async (r) => console.log(JSON.stringify({ status: r.status, json: await r.json(), ms: performance.now() - t0, bytes: body.length })));`;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ["-e", script], { maxBuffer: 1 << 20 }, (e, out) => (e ? reject(e) : resolve(JSON.parse(out)))),
  );
}

const smallChat = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 2 });

/** the slowest of `n` small chats one after another on the idle server */
async function idleBaseline(n = 5): Promise<number> {
  await post("/v1/chat/completions", smallChat); // warm
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, (await post("/v1/chat/completions", smallChat)).ms);
  return worst;
}

/** small chats one after another while `big` runs (at least `min`); their latencies */
async function whileRunning<T>(big: Promise<T>, min = 3): Promise<{ result: T; latencies: number[] }> {
  let done = false;
  const settled = big.finally(() => (done = true));
  const latencies: number[] = [];
  while (!done || latencies.length < min) {
    const r = await post("/v1/chat/completions", smallChat);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    latencies.push(r.ms);
  }
  return { result: await settled, latencies };
}

describe("huge prompts", () => {
  test("a 10 MB chat prompt is refused in under a second; a concurrent small chat stays fast", { timeout: 60_000 }, async () => {
    const baseline = await idleBaseline();
    // the child builds its body (~1 s on a busy machine) before it sends; the chats run throughout
    const { result, latencies } = await whileRunning(postFromChild("/v1/chat/completions", "Once upon a time there was a cat. "));
    assert.ok((result as unknown as { bytes: number }).bytes > 10_000_000);
    console.log(`10 MB prompt: refused in ${result.ms.toFixed(0)} ms; small chats idle worst ${baseline.toFixed(1)} ms, during ${latencies.map((l) => l.toFixed(0)).join(", ")} ms`);
    assert.equal(result.status, 400);
    assert.equal(result.json.error.code, "context_length_exceeded");
    assert.equal(result.json.error.param, "messages");
    // < 1 s on a quiet machine (the bound); it took 67-84 s when the prompt was tokenized
    // first. The margin is for a shared, loaded test machine (and includes the 10 MB upload)
    assert.ok(result.ms < 3000, `refused after ${result.ms} ms`);
    // the body's JSON parse is the only whole-prompt work left on the event loop. On a loaded
    // 2-core machine GC and the child's 10 MB body push single chats to ~300-430 ms (measured
    // in both the branch and main while five builds ran); tokenizing the prompt on the loop
    // would hold every chat for seconds, which this bound still catches
    assert.ok(Math.max(...latencies) < Math.max(100, 3 * baseline) + 600, `small chat took ${Math.max(...latencies)} ms (idle ${baseline} ms)`);
  });

  test("a long prompt that could fit by its characters is counted on the tokenizer thread", async () => {
    const baseline = await idleBaseline();
    const model = s.app.serving.state.status === "ready" ? s.app.serving.state.serving.model : assert.fail("not ready");
    // just under the character bound: on the event loop each of these costs ~0.2-0.5 s
    const text = "Once upon a time there was a cat. ".repeat(Math.floor((model.promptCharLimit - 100) / 34));
    const prompts = [0, 1, 2].map((i) => JSON.stringify({ model: MODEL, prompt: text + i, max_tokens: 1 }));
    const { result, latencies } = await whileRunning(Promise.all(prompts.map((p) => post("/v1/completions", p))));
    console.log(`3 × ${text.length}-char prompts: ${result.map((r) => r.ms.toFixed(0)).join(", ")} ms; small chats idle worst ${baseline.toFixed(1)} ms, during ${latencies.map((l) => l.toFixed(0)).join(", ")} ms`);
    const tokens = s.model.tokenizer.encode(text + "0", true).length;
    for (const r of result) {
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, "context_length_exceeded");
      // counted, not estimated: the message names the exact prompt tokens
      assert.match(r.json.error.message, new RegExp(`\\(${tokens} in the prompt`));
    }
    assert.ok(Math.max(...latencies) < Math.max(100, 3 * baseline) + 150, `small chat took ${Math.max(...latencies)} ms (idle ${baseline} ms)`);
  });

  test("a long prompt that fits is served from the thread's tokens", async () => {
    // " Lily" is one token: 2100+ characters, ~420 tokens
    const prompt = " Lily".repeat(Math.ceil((SYNC_TOKENIZE_CHARS + 50) / 5));
    const r = await post("/v1/completions", JSON.stringify({ model: MODEL, prompt, max_tokens: 3, temperature: 0 }));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.usage.prompt_tokens, s.model.tokenizer.encode(prompt, true).length);
    const chat = await post("/v1/chat/completions", JSON.stringify({ model: MODEL, messages: [{ role: "user", content: prompt }], max_tokens: 3, temperature: 0 }));
    assert.equal(chat.status, 200, JSON.stringify(chat.json));
    assert.equal(chat.json.usage.prompt_tokens, s.model.tokenizer.encode(s.model.chatTemplate.render([{ role: "user", content: prompt }], true), false).length);
  });
});

test("the tokenizer thread gives the same ids as the tokenizer itself", async () => {
  const tok = loadTokenizer(storiesDir);
  const thread = new TokenizerThread(storiesDir);
  try {
    const texts = ["", "Once upon a time", "<s>Hello</s> there é…€ 😀", "Once upon a time there was a cat. ".repeat(200), "a".repeat(5000)];
    for (const t of texts)
      for (const special of [true, false]) assert.deepEqual(await thread.encode(t, special), tok.encode(t, special), `${JSON.stringify(t.slice(0, 30))} ${special}`);
  } finally {
    await thread.close();
  }
  await assert.rejects(thread.encode("x", true), /closed/);
});
