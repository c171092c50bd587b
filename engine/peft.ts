// LoRA adapters and value heads in Hugging Face PEFT's on-disk layout:
//   adapter_config.json        PEFT's LoraConfig (peft_type "LORA", r, lora_alpha, target_modules …)
//   adapter_model.safetensors  base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}.weight
//   value_head.safetensors     v_head.summary.weight [1, C] (TRL's name), when the adapter has one
// so PEFT's PeftModel.from_pretrained loads what we save and we load what PEFT saves.
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { AdapterSpec, LinearName, LoraSpec, NativeModel } from "../native/index.js";
import type { ModelConfig } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { readJsonFile, type JsonObject } from "./json-file.js";
import { expectedShapes } from "./weights.js";
import { readF32Tensors, writeF32Tensors, type F32Tensor } from "./safetensors-writer.js";
import { writeJsonAtomic } from "./init-checkpoint.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
export const VALUE_HEAD_WEIGHTS = "value_head.safetensors";
export const VALUE_HEAD_NAME = "v_head.summary.weight";

/** Canonical target -> the HF module path inside a decoder layer. */
export const TARGET_MODULES: Record<LinearName, string> = {
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
};
export const LINEAR_NAMES = Object.keys(TARGET_MODULES) as LinearName[];
const BY_HF_MODULE = new Map(LINEAR_NAMES.map((t) => [TARGET_MODULES[t].split(".")[1], t]));

/** PEFT's tensor name of a native adapter parameter ("L3.q.lora_A" -> base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight). */
export function peftTensorName(layer: number, target: LinearName, matrix: "A" | "B"): string {
  return `base_model.model.model.layers.${layer}.${TARGET_MODULES[target]}.lora_${matrix}.weight`;
}

const PEFT_NAME = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_(A|B)(?:\.default)?\.weight$/;

// Specs of adapters created through this module, so a save knows alpha/dropout (the native
// side reports shapes, not the spec it was given).
const specs = new WeakMap<NativeModel, Map<string, AdapterSpec>>();

/** model.addAdapter, remembering the spec for savePeftAdapter. */
export function addAdapter(model: NativeModel, name: string, spec: AdapterSpec): void {
  model.addAdapter(name, spec);
  let m = specs.get(model);
  if (!m) specs.set(model, (m = new Map()));
  m.set(name, spec);
}

/** The spec an adapter was added with through addAdapter/loadPeftAdapter, or null. */
export function adapterSpec(model: NativeModel, name: string): AdapterSpec | null {
  return specs.get(model)?.get(name) ?? null;
}

/** [out, in] of a target linear layer. */
function linearShape(config: ModelConfig, target: LinearName): [number, number] {
  const s = expectedShapes(config).get(`L0.${target}`)!;
  return [s[0], s[1]];
}

/** adapter_config.json as PEFT writes it (every key of LoraConfig a current PEFT reads). */
export function peftConfig(lora: LoraSpec, baseModel: string): JsonObject {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: lora.rank,
    rank_pattern: {},
    revision: null,
    target_modules: lora.targets.map((t) => TARGET_MODULES[t].split(".")[1]),
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
  };
}

/**
 * Saves adapter `name` of `model` into `dir` (created if needed) in PEFT's layout; every
 * file is written atomically. The spec comes from opts.spec, else from addAdapter/loadPeftAdapter.
 */
export async function savePeftAdapter(
  model: NativeModel,
  config: ModelConfig,
  name: string,
  dir: string,
  opts: { baseModel: string; spec?: AdapterSpec },
): Promise<void> {
  const spec = opts.spec ?? adapterSpec(model, name);
  if (!spec) throw new ModelLoadError(`adapter "${name}": its spec (rank, alpha) is unknown; add it with engine/peft.ts addAdapter or pass opts.spec`, "bad_json");
  await mkdir(dir, { recursive: true });
  if (spec.lora) {
    const tensors: F32Tensor[] = [];
    for (let l = 0; l < config.numLayers; l++)
      for (const t of spec.lora.targets) {
        const [out, inn] = linearShape(config, t);
        tensors.push({ name: peftTensorName(l, t, "A"), shape: [spec.lora.rank, inn], data: model.readParameter(name, `L${l}.${t}.lora_A`) });
        tensors.push({ name: peftTensorName(l, t, "B"), shape: [out, spec.lora.rank], data: model.readParameter(name, `L${l}.${t}.lora_B`) });
      }
    await writeF32Tensors(join(dir, ADAPTER_WEIGHTS), tensors, { metadata: { format: "pt" } });
    await writeJsonAtomic(join(dir, ADAPTER_CONFIG), peftConfig(spec.lora, opts.baseModel));
  }
  if (spec.valueHead) {
    const data = model.readParameter(name, "value_head");
    await writeF32Tensors(join(dir, VALUE_HEAD_WEIGHTS), [{ name: VALUE_HEAD_NAME, shape: [1, data.length], data }], { metadata: { format: "pt" } });
  }
}

/** Validates adapter_config.json; returns the LoRA spec it describes. */
function parsePeftConfig(raw: JsonObject, file: string): LoraSpec {
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`, "bad_json");
  };
  const unsupported = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`, "unsupported_adapter");
  };
  if (raw.peft_type !== "LORA") unsupported(`peft_type ${JSON.stringify(raw.peft_type)} is not supported (only "LORA")`);
  if (raw.task_type !== undefined && raw.task_type !== null && raw.task_type !== "CAUSAL_LM")
    unsupported(`task_type ${JSON.stringify(raw.task_type)} is not supported (only "CAUSAL_LM")`);
  const r = raw.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r <= 0) bad(`"r" must be a positive integer, got ${JSON.stringify(r)}`);
  const alphaRaw = raw.lora_alpha ?? r;
  if (typeof alphaRaw !== "number" || !Number.isFinite(alphaRaw) || alphaRaw <= 0) bad(`"lora_alpha" must be a positive number, got ${JSON.stringify(raw.lora_alpha)}`);
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== "number" || dropout < 0 || dropout >= 1) bad(`"lora_dropout" must be in [0, 1), got ${JSON.stringify(raw.lora_dropout)}`);
  if ((raw.bias ?? "none") !== "none") unsupported(`bias ${JSON.stringify(raw.bias)} is not supported (only "none")`);
  if (raw.fan_in_fan_out === true) unsupported(`fan_in_fan_out true is for GPT-2-style Conv1D layers, not a Llama-family model`);
  if (raw.use_dora === true) unsupported(`use_dora true (DoRA) is not supported`);
  for (const k of ["rank_pattern", "alpha_pattern"] as const) {
    const v = raw[k];
    if (v && typeof v === "object" && Object.keys(v).length > 0) unsupported(`"${k}" (per-module ranks/alphas) is not supported`);
  }
  for (const k of ["layers_to_transform", "layer_replication"] as const)
    if (raw[k] !== undefined && raw[k] !== null) unsupported(`"${k}" is not supported (LoRA must cover every layer)`);
  const mts = raw.modules_to_save;
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.length === 0)) unsupported(`"modules_to_save" ${JSON.stringify(mts)} is not supported`);
  let targets: LinearName[];
  const tm = raw.target_modules;
  if (tm === "all-linear") targets = [...LINEAR_NAMES];
  else if (Array.isArray(tm) && tm.length > 0 && tm.every((x) => typeof x === "string")) {
    const set = new Set<LinearName>();
    for (const m of tm as string[]) {
      const t = BY_HF_MODULE.get(m.split(".").pop()!);
      if (!t) unsupported(`target module "${m}" is not supported (supported: ${[...BY_HF_MODULE.keys()].join(", ")}, or "all-linear")`);
      set.add(t!);
    }
    targets = LINEAR_NAMES.filter((t) => set.has(t));
  } else return bad(`"target_modules" must be a non-empty list of module names or "all-linear", got ${JSON.stringify(tm)}`);
  // rsLoRA scales by alpha/√r instead of alpha/r: the same update with alpha' = alpha·√r
  const alpha = raw.use_rslora === true ? (alphaRaw as number) * Math.sqrt(r as number) : (alphaRaw as number);
  return { rank: r as number, alpha, dropout: dropout as number, targets, seed: 0 };
}

/** An adapter directory read and validated: its spec and the native parameters to write. */
export interface PeftAdapterData {
  spec: AdapterSpec;
  params: { param: string; data: Float32Array }[];
}

/**
 * Reads a PEFT adapter directory and validates everything (config keys, every tensor's name
 * and shape against the model's config); errors name the file and tensor.
 */
export function readPeftAdapter(config: ModelConfig, dir: string): PeftAdapterData {
  const cfgFile = join(dir, ADAPTER_CONFIG);
  const weightsFile = join(dir, ADAPTER_WEIGHTS);
  const vhFile = join(dir, VALUE_HEAD_WEIGHTS);
  const hasLora = existsSync(cfgFile);
  const hasVh = existsSync(vhFile);
  if (!hasLora && !hasVh) throw new ModelLoadError(`${dir}: not an adapter directory (no ${ADAPTER_CONFIG} nor ${VALUE_HEAD_WEIGHTS})`, "missing_file");
  if (hasLora && !existsSync(weightsFile)) {
    const bin = existsSync(join(dir, "adapter_model.bin"));
    throw new ModelLoadError(
      bin ? `${dir}: adapter_model.bin (pickle) is not supported; save the adapter with safe_serialization=True` : `missing file: ${weightsFile}`,
      "missing_file",
    );
  }
  const lora = hasLora ? parsePeftConfig(readJsonFile(cfgFile), cfgFile) : null;
  const writes: { param: string; data: Float32Array }[] = [];
  if (lora) {
    const want = new Map<string, { param: string; shape: number[] }>();
    for (let l = 0; l < config.numLayers; l++)
      for (const t of lora.targets) {
        const [out, inn] = linearShape(config, t);
        want.set(peftTensorName(l, t, "A"), { param: `L${l}.${t}.lora_A`, shape: [lora.rank, inn] });
        want.set(peftTensorName(l, t, "B"), { param: `L${l}.${t}.lora_B`, shape: [out, lora.rank] });
      }
    const { tensors } = readF32Tensors(weightsFile);
    const seen = new Set<string>();
    for (const [stored, t] of tensors) {
      // PEFT versions before 0.7 kept the adapter name ("default") inside the key
      const key = stored.replace(/\.lora_(A|B)\.default\.weight$/, ".lora_$1.weight");
      const m = PEFT_NAME.exec(key);
      const w = want.get(key);
      if (!m || !w) {
        const why = m ? `not part of a LoRA of rank ${lora.rank} on ${lora.targets.join(",")} over ${config.numLayers} layers (see ${ADAPTER_CONFIG})` : "not a PEFT LoRA tensor name";
        throw new ModelLoadError(`unexpected tensor "${stored}" in ${weightsFile}: ${why}`, "unexpected_tensor");
      }
      if (t.shape.length !== w.shape.length || t.shape.some((d, i) => d !== w.shape[i]))
        throw new ModelLoadError(`shape mismatch for tensor "${stored}" in ${weightsFile}: expected [${w.shape.join(", ")}], found [${t.shape.join(", ")}]`, "shape_mismatch");
      seen.add(key);
      writes.push({ param: w.param, data: t.data });
    }
    for (const [n, w] of want)
      if (!seen.has(n)) throw new ModelLoadError(`missing tensor "${n}" (shape [${w.shape.join(", ")}]) in ${weightsFile}`, "missing_tensor");
  }
  if (hasVh) {
    const { tensors } = readF32Tensors(vhFile);
    for (const n of tensors.keys())
      if (n !== VALUE_HEAD_NAME) throw new ModelLoadError(`unexpected tensor "${n}" in ${vhFile} (only ${VALUE_HEAD_NAME})`, "unexpected_tensor");
    const t = tensors.get(VALUE_HEAD_NAME);
    if (!t) throw new ModelLoadError(`missing tensor "${VALUE_HEAD_NAME}" (shape [1, ${config.hiddenSize}]) in ${vhFile}`, "missing_tensor");
    if (t.shape.length !== 2 || t.shape[0] !== 1 || t.shape[1] !== config.hiddenSize)
      throw new ModelLoadError(`shape mismatch for tensor "${VALUE_HEAD_NAME}" in ${vhFile}: expected [1, ${config.hiddenSize}], found [${t.shape.join(", ")}]`, "shape_mismatch");
    writes.push({ param: "value_head", data: t.data });
  }
  return { spec: { lora, valueHead: hasVh }, params: writes };
}

/**
 * Adds adapter `name` with `data`'s spec (or `spec`, same shapes) and writes its parameters;
 * on failure the adapter is removed again.
 */
export function addAdapterWithData(model: NativeModel, name: string, data: PeftAdapterData, spec: AdapterSpec = data.spec): void {
  addAdapter(model, name, spec);
  try {
    for (const w of data.params) model.writeParameter(name, w.param, w.data);
  } catch (e) {
    model.removeAdapter(name);
    specs.get(model)?.delete(name);
    throw e;
  }
}

/**
 * Loads a PEFT adapter directory onto `model` as adapter `name`. Everything is validated
 * before the adapter is added (readPeftAdapter); a failure leaves the model unchanged.
 */
export async function loadPeftAdapter(model: NativeModel, config: ModelConfig, name: string, dir: string): Promise<AdapterSpec> {
  const data = readPeftAdapter(config, dir);
  addAdapterWithData(model, name, data);
  return data.spec;
}
