// A checkpoint saved the transformers 5 way (test/fixtures/transformers5, made by make.mjs
// there): RoPE only in `rope_parameters` (llama3 type, theta 500000), `dtype` instead of
// `torch_dtype`, the chat template only in chat_template.jinja, attention_bias + mlp_bias.
// Loaded as a user would, its logits are checked against the float64 reference (which
// reads nothing but the weights and the numbers stated here), and the template files'
// precedence against transformers' (chat_template.jinja > chat_template.json >
// tokenizer_config.json).
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeChat } from "../engine/chat-template.js";
import { inspectCheckpoint, loadModel } from "../engine/model.js";
import { ropeInvFreq } from "../engine/rope.js";
import { isBlockDType, type TensorRef } from "../native/index.js";
import { assertClose } from "./reference/check.js";
import { toFloat64 } from "./reference/dtype.js";
import { llamaForwardRef, type RefConfig, type RefWeights } from "./reference/llama.js";
import { repoRoot } from "./test-model.js";

const fixture = join(repoRoot, "test", "fixtures", "transformers5");

/** A TensorRef's values in float64. */
function values(t: TensorRef): Float64Array {
  if (isBlockDType(t.dtype)) throw new Error(`${t.dtype} is a quantized block format, not a fixture dtype`);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const bytes = readFileSync(t.file).subarray(t.offset, t.offset + n * (t.dtype === "f32" ? 4 : 2));
  const copy = new Uint8Array(bytes); // aligned
  return toFloat64(t.dtype === "f32" ? new Float32Array(copy.buffer) : new Uint16Array(copy.buffer), t.dtype);
}

describe("a transformers 5 checkpoint", () => {
  const tmp = mkdtempSync(join(tmpdir(), "hc-t5-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("reads rope_parameters (llama3, theta 500000) and the biases; logits equal the float64 reference", async () => {
    const { config, tensors } = inspectCheckpoint(fixture);
    assert.equal(config.ropeTheta, 500000);
    assert.deepEqual(config.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 });
    assert.deepEqual([config.attentionBias, config.oBias, config.mlpBias, config.torchDtype], [true, true, true, "bfloat16"]);
    const weights: RefWeights = new Map(tensors.map((t) => [t.name, values(t)]));
    // the reference's RoPE from the stated numbers (HF's llama3 rule in engine/rope.ts is
    // checked against transformers' values in rope.test.ts)
    const ref = (theta: number, scaled: boolean): RefConfig => ({
      C: 32, I: 48, L: 2, NH: 4, NKV: 2, HD: 8, V: 354, eps: 1e-5, ropeScaling: 1, attentionBias: true, oBias: true, mlpBias: true,
      qkNorm: false, tied: true,
      invFreq: ropeInvFreq({ headDim: 8, ropeTheta: theta, ropeScaling: scaled ? config.ropeScaling : null }).invFreq,
    });
    const tokens = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 354);
    // the float64 reference keeps x and K/V unrounded: fp32 products and an f32 KV cache ("auto"
    // rounds a bf16 checkpoint's x and cache)
    const model = await loadModel(fixture, { threads: 2, kvDtype: "f32", matmulPrecision: "highest" });
    try {
      const got = await model.native.forward({ seqIds: Int32Array.of(0), tokens: Int32Array.from(tokens), counts: Int32Array.of(40), logits: "all" });
      assertClose(got, llamaForwardRef(ref(500000, true), weights, tokens), 1e-4, 1e-3, "logits vs float64 reference");
      // what ignoring rope_parameters (theta 10000, no scaling) would have served: far off
      const wrong = llamaForwardRef(ref(10000, false), weights, tokens);
      const off = got.reduce((m, v, i) => Math.max(m, Math.abs(v - wrong[i]!)), 0);
      assert.ok(off > 0.05, `theta 10000 would differ by ${off}`);
    } finally {
      model.dispose();
    }
  });

  it("takes the chat template from chat_template.jinja (no inline template)", () => {
    const { chatTemplate, tokenizer } = inspectCheckpoint(fixture);
    assert.equal(chatTemplate.origin, "chat_template.jinja");
    assert.equal(chatTemplate.isDefault, false);
    const msgs = [{ role: "user" as const, content: "hello there" }];
    assert.equal(chatTemplate.render(msgs, true), "<s><|user|>\nhello there</s>\n<|assistant|>\n");
    assert.equal(encodeChat({ tokenizer, chatTemplate }, msgs)[0], 1);
  });

  it("template precedence: chat_template.jinja, then chat_template.json, then tokenizer_config.json", () => {
    const dir = join(tmp, "precedence");
    cpSync(fixture, dir, { recursive: true });
    const tc = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...tc, chat_template: "INLINE{{ messages[0]['content'] }}" }));
    writeFileSync(join(dir, "chat_template.json"), JSON.stringify({ chat_template: "JSON{{ messages[0]['content'] }}" }));
    const render = () => {
      const t = inspectCheckpoint(dir).chatTemplate;
      return [t.origin, t.render([{ role: "user", content: "x" }], false)];
    };
    assert.deepEqual(render(), ["chat_template.jinja", "<s><|user|>\nx</s>\n"]);
    rmSync(join(dir, "chat_template.jinja"));
    assert.deepEqual(render(), ["chat_template.json", "JSONx"]);
    rmSync(join(dir, "chat_template.json"));
    assert.deepEqual(render(), ["tokenizer_config.json", "INLINEx"]);
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tc));
    assert.match(render()[0]!, /built-in/);
  });
});
