// Shared by the whole-loop and continuous-RLHF tests: sampled chats through the official
// client (n choices each), and a pairwise preference on the two choices of a chat whenever
// exactly one mentions an animal (test/pref-helpers.ts's WORD). (No tests here.)
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { WORD } from "./pref-helpers.js";

export const TOKENS = 32;

/** `requests` chat completions per prompt with n choices, temperature 1, distinct seeds, 16 in flight. */
export async function chats(client: OpenAI, model: string, prompts: readonly string[], requests: number, n: number, seed: number): Promise<OpenAI.ChatCompletion[]> {
  const todo = prompts.flatMap((p, i) => Array.from({ length: requests }, (_, k) => ({ p, seed: seed + 1000 * i + k })));
  const out: OpenAI.ChatCompletion[] = [];
  for (let i = 0; i < todo.length; i += 16)
    out.push(
      ...(await Promise.all(
        todo.slice(i, i + 16).map((t) => client.chat.completions.create({ model, messages: [{ role: "user", content: t.p }], n, max_tokens: TOKENS, temperature: 1, seed: t.seed })),
      )),
    );
  return out;
}

export function animalRate(cs: readonly OpenAI.ChatCompletion[]): number {
  const texts = cs.flatMap((c) => c.choices.map((x) => x.message.content ?? ""));
  return texts.filter((t) => WORD.test(t)).length / texts.length;
}

/** POST /v1/feedback preferences on the n: 2 chats whose choices differ in WORD; returns how many. */
export async function preferAnimals(url: string, cs: readonly OpenAI.ChatCompletion[]): Promise<number> {
  let pairs = 0;
  for (const c of cs) {
    const [a, b] = c.choices.map((x) => WORD.test(x.message.content ?? ""));
    if (a === b) continue;
    const r = await fetch(`${url}/v1/feedback`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ completion_id: c.id, chosen_index: a ? 0 : 1, rejected_index: a ? 1 : 0 }),
    });
    assert.equal(r.status, 200, await r.text());
    pairs++;
  }
  return pairs;
}
