// Checkpoints of an SFT run and resuming from them. A checkpoint is a directory
// <out>/checkpoint-<step>/ holding the trained weights (PEFT adapter, or an HF checkpoint for
// full fine-tuning), optimizer.safetensors (AdamW moments as "<name>.exp_avg"/"<name>.exp_avg_sq",
// the step count in its metadata) and trainer_state.json. It is written under a temporary name
// and renamed, so a run killed while saving never leaves a checkpoint that looks complete.
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { AdapterSpec, NativeModel, OptimizerState } from "../../../native/index.js";
import type { ModelConfig } from "../../types.js";
import { ModelLoadError } from "../../load-errors.js";
import { readJsonFile } from "../../json-file.js";
import { canonicalName } from "../../weights.js";
import { addAdapterWithData, readPeftAdapter, savePeftAdapter } from "../../peft.js";
import { writeHfCheckpoint } from "../../hf-checkpoint-writer.js";
import { readF32Tensors, writeF32Tensors, type F32Tensor, type WriteProgress } from "../../safetensors-writer.js";
import { writeJsonAtomic } from "../../init-checkpoint.js";
import type { EncodedExample } from "../data/sft-encode.js";

export const TRAINER_STATE = "trainer_state.json";
export const OPTIMIZER_FILE = "optimizer.safetensors";

/** What a resumed run must agree on with the run that wrote the checkpoint. */
export interface RunSettings {
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  targets: string[];
  epochs: number;
  batchSize: number;
  lr: number;
  schedule: string;
  warmupSteps: number;
  maxLength: number;
  /** "rm", "dpo" (absent: SFT, as older checkpoints were written) */
  method?: string;
  /** DPO's β */
  beta?: number;
  /** DPO: the SFT adapter the policy started from (and the reference is) */
  initAdapter?: string;
}

export interface TrainerState {
  global_step: number;
  /** epochs completed */
  epoch: number;
  total_steps: number;
  /** epoch orders are streams of (seed, epoch): the seed is the whole generator state */
  rng: { seed: number };
  /** sha256 of the encoded training tokens and masks */
  data_hash: string;
  settings: RunSettings;
}

/** What is trained: an adapter (saved in PEFT layout) or the whole base (saved as an HF checkpoint). */
export interface TrainedWeights {
  model: NativeModel;
  config: ModelConfig;
  /** checkpoint directory the base was loaded from */
  modelDir: string;
  /** adapter name and spec, or null for full fine-tuning */
  adapter: { name: string; spec: AdapterSpec } | null;
}

export function dataHash(examples: readonly EncodedExample[]): string {
  const h = createHash("sha256");
  for (const ex of examples) {
    h.update(new Uint8Array(Int32Array.of(ex.tokens.length).buffer));
    h.update(new Uint8Array(ex.tokens.buffer, ex.tokens.byteOffset, ex.tokens.byteLength));
    h.update(ex.mask);
  }
  return h.digest("hex");
}

/**
 * Writes the final weights (PEFT adapter or HF checkpoint) into `dir`; `onProgress` follows
 * the base's weights of a full fine-tune (an adapter is small).
 */
export async function saveWeights(w: TrainedWeights, dir: string, onProgress?: WriteProgress): Promise<void> {
  if (w.adapter) await savePeftAdapter(w.model, w.config, w.adapter.name, dir, { baseModel: w.modelDir, spec: w.adapter.spec });
  else await writeHfCheckpoint(w.model, w.config, w.modelDir, dir, { onProgress });
}

export async function saveOptimizerState(file: string, state: OptimizerState, onProgress?: WriteProgress): Promise<void> {
  const tensors: F32Tensor[] = [];
  for (const t of state.tensors) {
    tensors.push({ name: `${t.name}.exp_avg`, shape: [t.expAvg.length], data: t.expAvg });
    tensors.push({ name: `${t.name}.exp_avg_sq`, shape: [t.expAvgSq.length], data: t.expAvgSq });
  }
  await writeF32Tensors(file, tensors, { metadata: { step: String(state.step) }, onProgress });
}

export function loadOptimizerStateFile(file: string): OptimizerState {
  const { tensors, metadata } = readF32Tensors(file);
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) throw new ModelLoadError(`${file}: metadata "step" missing or not an integer`, "bad_safetensors");
  const out: OptimizerState = { step, tensors: [] };
  for (const [name, t] of tensors) {
    if (!name.endsWith(".exp_avg")) continue;
    const base = name.slice(0, -".exp_avg".length);
    const sq = tensors.get(`${base}.exp_avg_sq`);
    if (!sq) throw new ModelLoadError(`${file}: "${base}.exp_avg" has no "${base}.exp_avg_sq"`, "missing_tensor");
    out.tensors.push({ name: base, expAvg: t.data, expAvgSq: sq.data });
  }
  return out;
}

export function checkpointDir(out: string, step: number): string {
  return join(out, `checkpoint-${step}`);
}

/** Saves <out>/checkpoint-<step>/ atomically (temp directory + rename); `onProgress` follows each big file. */
export async function saveCheckpoint(out: string, w: TrainedWeights, state: TrainerState, onProgress?: WriteProgress): Promise<string> {
  const dir = checkpointDir(out, state.global_step);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await saveWeights(w, tmp, onProgress);
  await saveOptimizerState(join(tmp, OPTIMIZER_FILE), w.model.optimizerState(), onProgress);
  await writeJsonAtomic(join(tmp, TRAINER_STATE), state);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return dir;
}

/** The checkpoint with the highest step under `out`, or null. */
export function lastCheckpoint(out: string): string | null {
  if (!existsSync(out)) return null;
  let best: { step: number; dir: string } | null = null;
  for (const name of readdirSync(out)) {
    const m = /^checkpoint-(\d+)$/.exec(name);
    if (!m || !existsSync(join(out, name, TRAINER_STATE))) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { step, dir: join(out, name) };
  }
  return best?.dir ?? null;
}

export function readTrainerState(dir: string): TrainerState {
  const file = join(dir, TRAINER_STATE);
  const raw = readJsonFile(file) as unknown as TrainerState;
  if (!Number.isInteger(raw.global_step) || !Number.isInteger(raw.epoch) || typeof raw.data_hash !== "string" || !raw.settings || !raw.rng)
    throw new ModelLoadError(`${file}: not a trainer state written by hybridchat (global_step, epoch, data_hash, settings, rng)`, "bad_json");
  return raw;
}

/** Differences between the settings of a checkpoint and of this run, as "key: was → now". */
export function settingsMismatch<T extends object>(saved: T, now: T): string[] {
  const out: string[] = [];
  for (const k of Object.keys(now) as (keyof T & string)[])
    if (JSON.stringify(saved[k]) !== JSON.stringify(now[k])) out.push(`${k}: ${JSON.stringify(saved[k])} → ${JSON.stringify(now[k])}`);
  return out;
}

/**
 * Restores the trained weights of a checkpoint. For an adapter run the adapter must not exist
 * yet: it is added with the run's own `spec` (its seed drives LoRA dropout; PEFT files do not
 * keep it) after the checkpoint's files are validated against that spec's shapes.
 */
export function restoreWeights(dir: string, model: NativeModel, config: ModelConfig, adapter: { name: string; spec: AdapterSpec } | null): void {
  if (adapter !== null) {
    const data = readPeftAdapter(config, dir);
    const a = data.spec.lora, b = adapter.spec.lora;
    if (!a || !b || a.rank !== b.rank || a.alpha !== b.alpha || a.targets.join() !== b.targets.join())
      throw new ModelLoadError(`${dir}: the adapter saved there does not match this run's LoRA settings`, "shape_mismatch");
    addAdapterWithData(model, adapter.name, data, adapter.spec);
    return;
  }
  const file = join(dir, "model.safetensors");
  for (const [hf, t] of readF32Tensors(file).tensors) {
    const canon = canonicalName(hf);
    if (canon === null) throw new ModelLoadError(`unexpected tensor "${hf}" in ${file}`, "unexpected_tensor");
    model.writeParameter(null, canon, t.data);
  }
}

export function restoreOptimizer(dir: string, model: NativeModel): void {
  model.loadOptimizerState(loadOptimizerStateFile(join(dir, OPTIMIZER_FILE)));
}
