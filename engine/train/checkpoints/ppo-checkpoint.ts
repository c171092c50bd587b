// Checkpoints of a PPO run and resuming from them: <out>/checkpoint-<step>/ holds the actor
// and critic adapters (PEFT layout), each role's AdamW moments (<role>.optimizer.safetensors,
// as run-state.ts writes them), the actor's EMA when kept (ema.safetensors) and
// trainer_state.json (step, seed, the data's hash, the settings, the ptx cursor). Written under
// a temporary name and renamed; only the newest is kept (a PPO step is short, and each
// checkpoint holds two adapters and their moments).
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { AdapterSpec, NativeModel, OptimizerState } from "../../../native/index.js";
import type { ModelConfig } from "../../types.js";
import { ModelLoadError } from "../../load-errors.js";
import { readJsonFile } from "../../json-file.js";
import { writeJsonAtomic } from "../../init-checkpoint.js";
import { addAdapterWithData, readPeftAdapter, savePeftAdapter } from "../../peft.js";
import { readF32Tensors, writeF32Tensors } from "../../safetensors-writer.js";
import { checkpointDir, lastCheckpoint, loadOptimizerStateFile, saveOptimizerState, settingsMismatch, TRAINER_STATE } from "./run-state.js";
import { TrainRunError } from "./run-files.js";
import type { PpoResumeState } from "../ppo/ppo.js";

const EMA_FILE = "ema.safetensors";
const optimizerFile = (role: string): string => `${role}.optimizer.safetensors`;

export interface PpoTrainerState {
  global_step: number;
  total_steps: number;
  rng: { seed: number };
  /** sha256 of the prompts' tokens (and the ptx examples') */
  data_hash: string;
  /** the run's settings as its start line reports them */
  settings: object;
  ptx_cursor: number;
}

/** The roles a checkpoint saves: the directory name and the adapter inside the model. */
export interface CheckpointRoles {
  actor: { adapter: string; spec: AdapterSpec };
  critic: { adapter: string; spec: AdapterSpec };
}

export function tokensHash(seqs: readonly ArrayLike<number>[]): string {
  const h = createHash("sha256");
  for (const s of seqs) {
    const t = Int32Array.from(s as ArrayLike<number>);
    h.update(new Uint8Array(Int32Array.of(t.length).buffer));
    h.update(new Uint8Array(t.buffer));
  }
  return h.digest("hex");
}

export async function savePpoCheckpoint(
  out: string,
  model: NativeModel,
  config: ModelConfig,
  baseModel: string,
  roles: CheckpointRoles,
  run: PpoResumeState,
  state: Omit<PpoTrainerState, "global_step" | "ptx_cursor">,
): Promise<string> {
  const dir = checkpointDir(out, run.step);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  for (const [role, r] of Object.entries(roles) as [keyof CheckpointRoles, CheckpointRoles[keyof CheckpointRoles]][]) {
    await savePeftAdapter(model, config, r.adapter, join(tmp, role), { baseModel, spec: r.spec });
    const moments = run.optimizer.get(r.adapter);
    if (moments) await saveOptimizerState(join(tmp, optimizerFile(role)), moments);
  }
  if (run.ema) await writeF32Tensors(join(tmp, EMA_FILE), [...run.ema].map(([name, data]) => ({ name, shape: [data.length], data })));
  await writeJsonAtomic(join(tmp, TRAINER_STATE), { ...state, global_step: run.step, ptx_cursor: run.ptxCursor });
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  for (const f of readdirSync(out)) if (/^checkpoint-\d+$/.test(f) && join(out, f) !== dir) await rm(join(out, f), { recursive: true, force: true });
  return dir;
}

/**
 * The newest checkpoint in `out` (null: none), checked against this run's settings, data and
 * seed; its actor and critic are added to the model as the roles' adapters.
 */
export function restorePpoCheckpoint(
  out: string,
  model: NativeModel,
  config: ModelConfig,
  roles: CheckpointRoles,
  now: Omit<PpoTrainerState, "global_step" | "ptx_cursor">,
): { dir: string; state: PpoResumeState } | null {
  const dir = lastCheckpoint(out);
  if (!dir) return null;
  const file = join(dir, TRAINER_STATE);
  const saved = readJsonFile(file) as unknown as PpoTrainerState;
  if (!Number.isInteger(saved.global_step) || !Number.isInteger(saved.ptx_cursor) || typeof saved.data_hash !== "string" || !saved.settings || !saved.rng)
    throw new ModelLoadError(`${file}: not a PPO trainer state written by hybridchat`, "bad_json");
  const diff = settingsMismatch(saved.settings, now.settings);
  if (saved.data_hash !== now.data_hash) diff.push("the prompts (or ptx data) changed");
  if (saved.rng.seed !== now.rng.seed) diff.push(`seed: ${saved.rng.seed} → ${now.rng.seed}`);
  if (diff.length > 0) throw new TrainRunError(`cannot resume from ${dir}: ${diff.join("; ")}. Run with the same options, or without --resume into a new --out`, "resume_mismatch");
  const optimizer = new Map<string, OptimizerState>();
  for (const [role, r] of Object.entries(roles) as [keyof CheckpointRoles, CheckpointRoles[keyof CheckpointRoles]][]) {
    addAdapterWithData(model, r.adapter, readPeftAdapter(config, join(dir, role)), r.spec);
    optimizer.set(r.adapter, loadOptimizerStateFile(join(dir, optimizerFile(role))));
  }
  const emaFile = join(dir, EMA_FILE);
  const ema = existsSync(emaFile) ? new Map([...readF32Tensors(emaFile).tensors].map(([name, t]) => [name, t.data])) : null;
  return { dir, state: { step: saved.global_step, ptxCursor: saved.ptx_cursor, optimizer, ema } };
}
