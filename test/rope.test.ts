import { test } from "node:test";
import assert from "node:assert/strict";
import { ropeInvFreq } from "../engine/rope.js";
import { parseConfig } from "../engine/config.js";
import { PRESETS } from "../engine/presets.js";

// Reference values from the float64 implementation in test/fixtures/golden/generate.py.
function close(actual: Float32Array, expected: number[], rel = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= rel * Math.abs(expected[i]), `inv_freq[${i}] = ${actual[i]}, expected ${expected[i]}`);
  }
}

test("default RoPE: 1 / theta^(2i/d)", () => {
  const r = ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: null });
  close(r.invFreq, [1, 0.1, 0.01, 0.001]);
  assert.equal(r.attentionScaling, 1);
});

test("linear scaling divides every frequency by the factor", () => {
  const plain = ropeInvFreq({ headDim: 64, ropeTheta: 10000, ropeScaling: null }).invFreq;
  const lin = ropeInvFreq({ headDim: 64, ropeTheta: 10000, ropeScaling: { type: "linear", factor: 4 } }).invFreq;
  for (let i = 0; i < 32; i++) assert.ok(Math.abs(lin[i] - plain[i] / 4) <= 1e-7 * plain[i]);
});

test("llama3 scaling on the llama3-tiny preset: high band kept, middle smoothed, low band / factor", () => {
  const c = parseConfig(PRESETS["llama3-tiny"]);
  close(ropeInvFreq(c).invFreq, [
    1.0, 0.0794030091792082, 0.004700753866357992, 0.0009115830921521386, 0.00017677669529663688, 3.428102195952591e-5,
    6.647869871181236e-6, 1.2891731721515574e-6,
  ]);
});

test("llama3 scaling with Llama 3.1 8B's settings", () => {
  const f = ropeInvFreq({
    headDim: 128,
    ropeTheta: 500000,
    ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  }).invFreq;
  const idx = [0, 20, 40, 44, 48, 63];
  close(
    Float32Array.from(idx.map((i) => f[i])),
    [1.0, 0.016560440080994446, 3.428102195952591e-5, 1.509621717643313e-5, 6.647869871181236e-6, 3.068925988914511e-7],
  );
});
