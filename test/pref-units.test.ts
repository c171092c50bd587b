// Unit tests of preference training: the reward-model and DPO losses and their gradients
// against hand-computed values and central differences; the packing helpers the losses read;
// preference data validation (every bad line with its number) and encoding masks.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dpoLoss, logSigmoid, pairwiseLoss, sigmoid } from "../engine/train/preference/pref-loss.js";
import { encodePairs, parsePreferenceJsonl, PreferenceDataError } from "../engine/train/data/pref-data.js";
import { sequenceLogp, valueBatch } from "../engine/train/loop/batches.js";
import { loadTokenizer } from "../engine/tokenizer.js";
import { chatTemplateFromConfig } from "../engine/chat-template.js";
import { storiesDir } from "./test-model.js";

const close = (a: number, b: number, tol = 1e-12, msg = "") => assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${msg} ${a} vs ${b}`);

describe("preference losses", () => {
  test("log σ is exact where it is easy and finite where exp overflows", () => {
    close(logSigmoid(0), -Math.log(2));
    close(logSigmoid(2), Math.log(1 / (1 + Math.exp(-2))));
    close(logSigmoid(-1000), -1000);
    close(logSigmoid(1000), 0);
    close(sigmoid(-800), 0);
    close(sigmoid(3) + sigmoid(-3), 1);
  });

  test("reward model: −log σ(r_c − r_r) and dL/dvalue by hand", () => {
    // r_c 1, r_r 0: loss ln(1 + e⁻¹), dL/dr_c = −σ(−1) = −1/(1 + e)
    const l = pairwiseLoss(1, 0);
    close(l.loss, 0.31326168751822286);
    close(l.dChosen, -0.2689414213699951);
    close(l.dRejected, 0.2689414213699951);
    // equal scores: ln 2, gradients ∓½
    const e = pairwiseLoss(0.7, 0.7);
    close(e.loss, Math.LN2);
    close(e.dChosen, -0.5);
  });

  test("DPO: loss and dL/dlogp by hand (β 0.1)", () => {
    // rewards 0.1·(−10 + 12) = 0.2 and 0.1·(−20 + 19) = −0.1, z = 0.3
    const l = dpoLoss(0.1, -10, -12, -20, -19);
    close(l.rewardChosen, 0.2, 1e-12);
    close(l.rewardRejected, -0.1, 1e-12);
    close(l.loss, Math.log1p(Math.exp(-0.3)), 1e-12);
    close(l.loss, 0.5543552444685272, 1e-12);
    close(l.dChosen, -0.1 * 0.425557483188341, 1e-12);
    close(l.dRejected, 0.1 * 0.425557483188341, 1e-12);
    // the policy equal to the reference: ln 2 whatever the log-probs, gradients ∓β/2
    const z = dpoLoss(0.5, -3, -3, -7, -7);
    close(z.loss, Math.LN2);
    close(z.dChosen, -0.25);
  });

  test("both gradients match central differences", () => {
    const h = 1e-6;
    for (const [c, r] of [[0.3, -1.2], [-4, 2.5], [10, 9]]) {
      const l = pairwiseLoss(c, r);
      close(l.dChosen, (pairwiseLoss(c + h, r).loss - pairwiseLoss(c - h, r).loss) / (2 * h), 1e-7, "rm dc");
      close(l.dRejected, (pairwiseLoss(c, r + h).loss - pairwiseLoss(c, r - h).loss) / (2 * h), 1e-7, "rm dr");
    }
    for (const [b, pc, rc, pr, rr] of [[0.1, -10, -12, -20, -19], [0.5, -3, -1, -2, -6], [2, -30, -31, -29, -28]]) {
      const l = dpoLoss(b, pc, rc, pr, rr);
      close(l.dChosen, (dpoLoss(b, pc + h, rc, pr, rr).loss - dpoLoss(b, pc - h, rc, pr, rr).loss) / (2 * h), 1e-7, "dpo dc");
      close(l.dRejected, (dpoLoss(b, pc, rc, pr + h, rr).loss - dpoLoss(b, pc, rc, pr - h, rr).loss) / (2 * h), 1e-7, "dpo dr");
    }
  });
});

describe("packing for scores and answer log-probs", () => {
  test("valueBatch: every target masked, values asked for, each sequence's last position", () => {
    const { batch, last } = valueBatch([Int32Array.of(1, 5, 6), Int32Array.of(1, 7), Int32Array.of(1, 2, 3, 4)], "rm", true);
    assert.deepEqual([...batch.counts], [3, 2, 4]);
    assert.deepEqual([...last], [2, 4, 8]);
    assert.ok(batch.targets.every((t) => t === -1));
    assert.equal(batch.values, true);
    assert.equal(batch.adapter, "rm");
    assert.throws(() => valueBatch([Int32Array.of()], "rm", false), /sequence 0 is empty/);
  });

  test("sequenceLogp sums each sequence's learned positions only", () => {
    const batch = { tokens: new Int32Array(5), counts: Int32Array.of(2, 3), targets: Int32Array.of(-1, 4, 9, -1, 8), adapter: null, values: false, grad: false, checkpoint: false };
    const s = sequenceLogp(batch, Float32Array.of(-100, -1, -2, -100, -0.5));
    assert.deepEqual([...s], [-1, -2.5]);
  });
});

describe("preference data", () => {
  test("text and OpenAI DPO lines parse; earlier assistant turns become context (weight 0)", () => {
    const t = parsePreferenceJsonl('{"prompt":"Once","chosen":" a dog","rejected":" a box"}\n\n{"prompt":"","chosen":"x","rejected":"y"}\n');
    assert.deepEqual(t.map((p) => [p.line, p.prompt, p.chosen, p.rejected]), [
      [1, { kind: "text", text: "Once" }, " a dog", " a box"],
      [3, { kind: "text", text: "" }, "x", "y"],
    ]);
    const msgs = [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }, { role: "user", content: "a story" }];
    const d = parsePreferenceJsonl(JSON.stringify({ input: { messages: msgs }, preferred_output: [{ role: "assistant", content: "A dog." }], non_preferred_output: [{ role: "assistant", content: "A box." }] }));
    assert.equal(d[0].prompt.kind, "chat");
    assert.deepEqual(d[0].prompt.kind === "chat" ? d[0].prompt.messages.map((m) => m.weight) : null, [undefined, 0, undefined]);
    assert.deepEqual([d[0].chosen, d[0].rejected], [{ role: "assistant", content: "A dog." }, { role: "assistant", content: "A box." }]);
  });

  test("OpenAI DPO lines with tools: answers that call tools parse; the same calls under other ids are nothing to prefer", () => {
    const tools = [{ type: "function", function: { name: "pick", parameters: { type: "object", properties: {} } } }];
    const call = (id: string, args: string) => ({ role: "assistant", tool_calls: [{ id, type: "function", function: { name: "pick", arguments: args } }] });
    const line = (a: object, b: object) => JSON.stringify({ input: { messages: [{ role: "user", content: "?" }], tools, parallel_tool_calls: false }, preferred_output: [a], non_preferred_output: [b] });
    const [p] = parsePreferenceJsonl(line(call("c1", '{"a": 1}'), { role: "assistant", content: "no" }));
    assert.deepEqual(p!.prompt.kind === "chat" ? p!.prompt.tools : null, tools);
    assert.deepEqual(p!.chosen, { role: "assistant", content: "", tool_calls: [{ id: "c1", type: "function", function: { name: "pick", arguments: { a: 1 } } }] });
    assert.throws(() => parsePreferenceJsonl(line(call("c1", '{"a": 1}'), call("c2", '{"a": 1}'))), /line 1: the preferred and rejected answers are the same/);
    assert.throws(() => parsePreferenceJsonl(line(call("c1", "{oops"), call("c2", "{}"))), /arguments is not JSON/);
  });

  test("every bad line is reported with its number, nothing returned", () => {
    const text = [
      '{"prompt":"a","chosen":"b","rejected":"c"}',
      "{oops",
      '{"prompt":"a","chosen":"b"}',
      '{"prompt":"a","chosen":"same","rejected":"same"}',
      '{"input":{"messages":[]},"preferred_output":[{"role":"assistant","content":"x"}],"non_preferred_output":[{"role":"assistant","content":"y"}]}',
      '{"prompt":"a","chosen":"","rejected":"c"}',
      '{"text":"a"}',
      "[1]",
    ].join("\n");
    let err: PreferenceDataError | null = null;
    try {
      parsePreferenceJsonl(text, "prefs.jsonl");
    } catch (e) {
      err = e as PreferenceDataError;
    }
    assert.ok(err instanceof PreferenceDataError);
    assert.equal(err.code, "bad_training_data");
    assert.deepEqual(err.errors.map((e) => e.line), [2, 3, 4, 5, 6, 7, 8]);
    assert.match(err.message, /^prefs\.jsonl: 7 bad lines; nothing was trained/);
    assert.match(err.message, /line 2: not valid JSON/);
    assert.match(err.message, /line 3: "rejected" must be a string/);
    assert.match(err.message, /line 4: the preferred and rejected answers are the same text/);
    assert.match(err.message, /line 5: a chat \(OpenAI DPO\) preference in a file of text preferences/);
    assert.match(err.message, /line 6: the preferred answer is empty/);
    assert.match(err.message, /line 7: neither "prompt"/);
    assert.match(err.message, /line 8: expected a JSON object/);
    assert.match(err.message, /"preferred_output"/, "the message shows both formats");
    const dpoBad = '{"input":{"messages":[{"role":"user","content":"q"}]},"preferred_output":[{"role":"user","content":"x"}],"non_preferred_output":[{"role":"assistant","content":"y"}]}';
    assert.throws(() => parsePreferenceJsonl(dpoBad), /line 1: preferred_output\[0\]\.role: must be assistant/);
    assert.throws(() => parsePreferenceJsonl("\n\n"), /the file holds no preference pairs/);
  });

  test("encoding: prompt + answer + EOS, the answer and EOS learned, the prompt not", () => {
    const tokenizer = loadTokenizer(storiesDir);
    const ctx = { tokenizer, chatTemplate: chatTemplateFromConfig(tokenizer.config), maxLength: 512 };
    const { encoded, errors, stats } = encodePairs(ctx, parsePreferenceJsonl('{"prompt":"Once upon a time","chosen":" there was a dog.","rejected":" there was a box."}'));
    assert.deepEqual(errors, []);
    assert.equal(stats.examples, 1);
    const prompt = tokenizer.encode("Once upon a time", true);
    for (const [ex, text] of [[encoded[0].chosen, " there was a dog."], [encoded[0].rejected, " there was a box."]] as const) {
      const ids = tokenizer.encode("Once upon a time" + text, true);
      assert.deepEqual([...ex.tokens], [...ids, tokenizer.eosIds[0]]);
      assert.deepEqual([...ex.mask], [...ex.tokens].map((_, t) => (t >= prompt.length ? 1 : 0)));
    }
  });
});
