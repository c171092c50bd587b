// Legacy completions `echo` with `logprobs`: the prompt's own token log-probs (the first one
// null), as lm-evaluation-harness reads log-likelihoods. Checked against the engine's own
// log-probs of generated tokens: a prompt that is P + those tokens must score them the same,
// whole or read in small prefill chunks.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { serveModel, sseData, type TestServing } from "./api-helpers.js";
import { samplingParams } from "./generation-helpers.js";

const MODEL = "stories260K";
let s: TestServing;
before(async () => {
  // prefill in chunks of 16 tokens: prompt log-probs must cross chunk boundaries
  s = await serveModel({ engine: { maxBatchTokens: 16 } });
});
after(async () => s.close());

interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

test("echo + logprobs scores the prompt as the engine scored the same tokens when it generated them", async () => {
  const prompt = s.model.tokenizer.encode("Once upon a time, there was a little dog named Max. He liked to", true);
  const generated: number[] = [];
  const scored: { logprob: number; top: { tokenId: number; logprob: number }[] }[] = [];
  for await (const e of s.engine.generate({ promptTokens: prompt, params: samplingParams({ temperature: 0, maxTokens: 12, logprobs: true, topLogprobs: 2 }) })) {
    if (e.type !== "delta") continue;
    generated.push(...e.tokenIds);
    scored.push(...e.logprobs);
  }
  const all = [...prompt, ...generated];
  const r = await s.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: all, echo: true, logprobs: 2, max_tokens: 1, temperature: 0 } });
  assert.equal(r.statusCode, 200, r.body);
  const choice = (JSON.parse(r.body) as { choices: { text: string; logprobs: LegacyLogprobs }[] }).choices[0]!;
  const lp = choice.logprobs;
  assert.equal(lp.tokens.length, all.length + 1);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  assert.deepEqual(lp.tokens.slice(0, all.length), all.map((t) => s.model.tokenizer.tokenText(t)));
  for (let k = 0; k < generated.length; k++) {
    const at = prompt.length + k;
    assert.ok(Math.abs(lp.token_logprobs[at]! - scored[k]!.logprob) < 1e-4, `token ${at}: ${lp.token_logprobs[at]} vs ${scored[k]!.logprob}`);
    const top = Object.values(lp.top_logprobs[at]!);
    assert.equal(top.length, 2);
    assert.ok(Math.abs(top[0]! - scored[k]!.top[0]!.logprob) < 1e-4);
  }
  for (const x of lp.token_logprobs.slice(1)) assert.ok(x !== null && x <= 0);
  assert.ok(choice.text.startsWith(s.model.tokenizer.decode(all, true)));
});

test("echo + logprobs streamed: the prompt chunk carries its log-probs, then the completion's", async () => {
  const r = await s.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "Once upon a time", echo: true, logprobs: 0, max_tokens: 3, temperature: 0, stream: true } });
  assert.equal(r.statusCode, 200, r.body);
  const chunks = sseData(r.body).filter((d) => d !== "[DONE]") as { choices: { text: string; logprobs: LegacyLogprobs | null }[] }[];
  const first = chunks[0]!.choices[0]!;
  assert.equal(first.text, "Once upon a time");
  const n = s.model.tokenizer.encode("Once upon a time", true).length;
  assert.equal(first.logprobs!.token_logprobs.length, n);
  assert.equal(first.logprobs!.token_logprobs[0], null);
  const whole = await s.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "Once upon a time", echo: true, logprobs: 0, max_tokens: 3, temperature: 0 } });
  const body = JSON.parse(whole.body) as { choices: { logprobs: LegacyLogprobs }[] };
  const streamed = chunks.flatMap((c) => c.choices.flatMap((x) => x.logprobs?.token_logprobs ?? []));
  assert.deepEqual(streamed, body.choices[0]!.logprobs.token_logprobs);
});
