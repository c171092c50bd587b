// PEFT layout: tensor names and adapter_config.json keys as PEFT writes and reads them; save
// then load gives the same parameters and logits; bad adapters fail with errors naming the
// file and tensor and leave the model unchanged.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AdapterSpec } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, loadPeftAdapter, peftTensorName, savePeftAdapter, ADAPTER_CONFIG, ADAPTER_WEIGHTS, VALUE_HEAD_WEIGHTS } from "../engine/peft.js";
import { readF32Tensors, writeF32Tensors } from "../engine/safetensors-writer.js";
import { Rng } from "../engine/rng.js";
import { storiesDir } from "./test-model.js";

let model: LoadedModel;
const dir = mkdtempSync(join(tmpdir(), "hc-peft-"));
before(async () => {
  model = await loadModel(storiesDir, { threads: 2, kvBlocks: 8 });
});
after(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Fills every parameter of an adapter with seeded noise (B is zero after init: logits would not differ). */
function randomise(name: string, seed: number): void {
  const rng = new Rng(seed);
  for (const p of model.native.parameters(name)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    model.native.writeParameter(name, p.name, Float32Array.from({ length: n }, () => 0.05 * rng.normal()));
  }
}

async function logits(adapter: string | null, seq: number): Promise<Float32Array> {
  const tokens = model.tokenizer.encode("Once upon a time, there was", true);
  const out = await model.native.forward({ seqIds: Int32Array.of(seq), tokens: Int32Array.from(tokens), counts: Int32Array.of(tokens.length), logits: "all", adapters: [adapter] });
  model.native.freeSeq(seq);
  return out;
}

const SPEC: AdapterSpec = { lora: { rank: 4, alpha: 8, dropout: 0.05, targets: ["q", "v", "down"], seed: 3 }, valueHead: true };
const saved = join(dir, "saved");

describe("PEFT layout", () => {
  before(async () => {
    addAdapter(model.native, "orig", SPEC);
    randomise("orig", 1);
    await savePeftAdapter(model.native, model.config, "orig", saved, { baseModel: "stories260K" });
  });

  test("adapter_config.json has the keys PEFT's LoraConfig reads, with HF module names", () => {
    const cfg = JSON.parse(readFileSync(join(saved, ADAPTER_CONFIG), "utf8"));
    for (const [k, v] of Object.entries({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      bias: "none",
      fan_in_fan_out: false,
      base_model_name_or_path: "stories260K",
      inference_mode: true,
      modules_to_save: null,
      use_rslora: false,
      use_dora: false,
      init_lora_weights: true,
      layers_to_transform: null,
      rank_pattern: {},
      alpha_pattern: {},
    }))
      assert.deepEqual(cfg[k], v, k);
  });

  test("tensor names and shapes are PEFT's; the value head is TRL's v_head.summary.weight [1, C]", () => {
    const { tensors } = readF32Tensors(join(saved, ADAPTER_WEIGHTS));
    const C = model.config.hiddenSize, I = model.config.intermediateSize, KV = model.config.numKvHeads * model.config.headDim;
    assert.equal(tensors.size, model.config.numLayers * 3 * 2);
    assert.equal(peftTensorName(2, "q", "A"), "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight");
    assert.deepEqual(tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!.shape, [4, C]);
    assert.deepEqual(tensors.get("base_model.model.model.layers.4.self_attn.v_proj.lora_B.weight")!.shape, [KV, 4]);
    assert.deepEqual(tensors.get("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")!.shape, [4, I]);
    assert.deepEqual(tensors.get("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")!.shape, [C, 4]);
    assert.deepEqual([...tensors.get("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight")!.data], [...model.native.readParameter("orig", "L3.down.lora_B")]);
    const vh = readF32Tensors(join(saved, VALUE_HEAD_WEIGHTS)).tensors;
    assert.deepEqual([...vh.keys()], ["v_head.summary.weight"]);
    assert.deepEqual(vh.get("v_head.summary.weight")!.shape, [1, C]);
  });

  test("load into a fresh adapter: same spec, same parameters, same logits (and they differ from the base)", async () => {
    const spec = await loadPeftAdapter(model.native, model.config, "loaded", saved);
    assert.deepEqual(spec, { lora: { ...SPEC.lora!, seed: 0 }, valueHead: true });
    for (const p of model.native.parameters("orig")) assert.deepEqual([...model.native.readParameter("loaded", p.name)], [...model.native.readParameter("orig", p.name)], p.name);
    const a = await logits("orig", 1);
    const b = await logits("loaded", 2);
    assert.deepEqual([...b], [...a]);
    const base = await logits(null, 3);
    assert.ok(base.some((v, i) => Math.abs(v - a[i]) > 1e-3));
  });

  test("rsLoRA and 'all-linear' configs load as the equivalent plain LoRA", async () => {
    const d = join(dir, "rs");
    cpSync(saved, d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, ADAPTER_CONFIG), "utf8"));
    writeFileSync(join(d, ADAPTER_CONFIG), JSON.stringify({ ...cfg, use_rslora: true }));
    const spec = await loadPeftAdapter(model.native, model.config, "rs", d);
    assert.equal(spec.lora!.alpha, 8 * 2);
    model.native.removeAdapter("rs");
  });

  describe("bad adapters: clear errors, model unchanged", () => {
    async function broken(name: string, edit: (d: string) => void | Promise<void>, code: string, message: RegExp): Promise<void> {
      const d = join(dir, name);
      cpSync(saved, d, { recursive: true });
      await edit(d);
      const before = model.native.adapters();
      await assert.rejects(loadPeftAdapter(model.native, model.config, name, d), (e: Error & { code?: string }) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      });
      assert.deepEqual(model.native.adapters(), before);
    }
    const editConfig = (patch: Record<string, unknown>) => (d: string) => {
      const cfg = JSON.parse(readFileSync(join(d, ADAPTER_CONFIG), "utf8"));
      writeFileSync(join(d, ADAPTER_CONFIG), JSON.stringify({ ...cfg, ...patch }));
    };
    const rewriteWeights = (f: (t: Map<string, { name: string; shape: number[]; data: Float32Array }>) => void) => async (d: string) => {
      const { tensors } = readF32Tensors(join(d, ADAPTER_WEIGHTS));
      f(tensors);
      await writeF32Tensors(join(d, ADAPTER_WEIGHTS), [...tensors.values()]);
    };
    const qA0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

    test("not LoRA", () => broken("b1", editConfig({ peft_type: "PREFIX_TUNING" }), "unsupported_adapter", /adapter_config\.json: peft_type "PREFIX_TUNING" is not supported/));
    test("DoRA", () => broken("b2", editConfig({ use_dora: true }), "unsupported_adapter", /DoRA/));
    test("unknown target module", () => broken("b3", editConfig({ target_modules: ["q_proj", "lm_head"] }), "unsupported_adapter", /target module "lm_head" is not supported/));
    test("bad r", () => broken("b4", editConfig({ r: -1 }), "bad_json", /"r" must be a positive integer/));
    test("rank in the config disagrees with the tensors", () =>
      broken("b5", editConfig({ r: 2 }), "shape_mismatch", /shape mismatch for tensor "base_model\.model\.model\.layers\.\d\.\S+" in .*adapter_model\.safetensors: expected \[2, /));
    test("missing tensor", () => broken("b6", rewriteWeights((t) => t.delete(qA0)), "missing_tensor", new RegExp(`missing tensor "${qA0.replaceAll(".", "\\.")}" \\(shape \\[4, 64\\]\\)`)));
    test("tensor of a module not in target_modules", () =>
      broken("b7", editConfig({ target_modules: ["v_proj", "down_proj"] }), "unexpected_tensor", /unexpected tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" in .*: not part of a LoRA/));
    test("not a PEFT name", () =>
      broken("b8", rewriteWeights((t) => t.set("model.layers.0.foo", { name: "model.layers.0.foo", shape: [1], data: new Float32Array(1) })), "unexpected_tensor", /not a PEFT LoRA tensor name/));
    test("value head of the wrong width", () =>
      broken("b9", (d) => writeF32Tensors(join(d, VALUE_HEAD_WEIGHTS), [{ name: "v_head.summary.weight", shape: [1, 3], data: new Float32Array(3) }]), "shape_mismatch", /v_head\.summary\.weight.*expected \[1, 64\], found \[1, 3\]/));
    test("not an adapter directory", () => broken("b10", (d) => { rmSync(join(d, ADAPTER_CONFIG)); rmSync(join(d, VALUE_HEAD_WEIGHTS)); }, "missing_file", /not an adapter directory/));
    test("pickle weights", () => broken("b11", (d) => { rmSync(join(d, ADAPTER_WEIGHTS)); writeFileSync(join(d, "adapter_model.bin"), ""); }, "missing_file", /adapter_model\.bin \(pickle\) is not supported/));
  });
});
