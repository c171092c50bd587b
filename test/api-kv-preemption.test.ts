// KV blocks allocated as sequences grow, preemption by recompute, on the real model: 16
// chats without max_tokens (each may run to the end of the context) share a pool of about
// 1.6 contexts, so running ones must be preempted and prefilled again; every one completes
// with the same greedy text as when it runs alone. Also the --kv-cache-memory parser.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { memoryOption, UsageError } from "../cli/errors.js";
import { serveModel, type TestServing } from "./api-helpers.js";

let s: TestServing;

before(async () => {
  // stories260K: 1280 bytes of f32 K and V per token, so 1 MiB is 51 blocks of 16 (816 tokens)
  s = await serveModel({ load: { kvCacheMemory: { bytes: 1 << 20 } }, engine: { maxBatch: 16, maxQueue: 16 } });
});
after(async () => {
  await s.close();
});

const subjects = ["a cat", "a dog", "the sun", "a boat", "a tree", "the sea", "a bird", "a ball", "a cake", "a frog", "a king", "the moon", "a car", "a fish", "a toy", "a hat"];

async function chat(subject: string): Promise<{ content: string; finish: string; tokens: number }> {
  const res = await s.app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    payload: { model: "stories260K", messages: [{ role: "user", content: `Tell me a story about ${subject}.` }], temperature: 0 },
  });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json() as { choices: { message: { content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
  return { content: body.choices[0]!.message.content, finish: body.choices[0]!.finish_reason, tokens: body.usage.completion_tokens };
}

test("16 concurrent chats without max_tokens on a small pool are preempted, complete, and match running alone", async (t) => {
  assert.equal(s.engine.stats().preemptions, 0);
  const together = await Promise.all(subjects.map(chat));
  const preemptions = s.engine.stats().preemptions;
  assert.ok(preemptions > 0, "the pool must have run short");
  t.diagnostic(`${preemptions} preemptions; completion tokens ${together.map((c) => c.tokens).join(" ")}`);
  const metrics = await s.app.inject({ method: "GET", url: "/metrics" });
  const line = /^hybridchat_num_preemptions_total (\d+)$/m.exec(metrics.body);
  assert.ok(line, metrics.body);
  assert.equal(Number(line[1]), preemptions);
  for (const [i, subject] of subjects.entries()) {
    const alone = await chat(subject);
    assert.deepEqual(together[i], alone, `chat ${i} (${subject})`);
  }
  assert.equal(s.engine.stats().preemptions, preemptions, "one at a time never runs short");
  assert.equal(s.engine.stats().kvUsage, 0);
});

test("--kv-cache-memory takes bytes with a unit, or a fraction of free memory", () => {
  assert.deepEqual(memoryOption("512MiB", "kv-cache-memory", "serve"), { bytes: 512 * 1024 ** 2 });
  assert.deepEqual(memoryOption("2GB", "kv-cache-memory", "serve"), { bytes: 2e9 });
  assert.deepEqual(memoryOption("1048576", "kv-cache-memory", "serve"), { bytes: 1048576 });
  assert.deepEqual(memoryOption("0.5", "kv-cache-memory", "serve"), { fraction: 0.5 });
  assert.equal(memoryOption(undefined, "kv-cache-memory", "serve"), undefined);
  for (const bad of ["", "lots", "1.5", "0", "5XB", "-1GiB"]) assert.throws(() => memoryOption(bad, "kv-cache-memory", "serve"), UsageError, bad);
});
