// DeepSpeed-Chat's three steps (e2e_rlhf.py) as one run on one loaded base: step 1 SFT
// trains the actor's LoRA, step 2 the reward model (LoRA + value head) on the base, step 3
// PPO starts the actor from step 1's adapter and the critic from step 2's reward model.
// Each step writes under <out>/step1-sft, step2-reward-model, step3-ppo (PEFT layout, as
// `train sft|rm|ppo` write them) and reads the earlier steps' outputs from there, so
// `steps: [2, 3]` reuses a step 1 run before. The end draws <out>/training-curves.svg from
// the steps' logs. The CLI adds flags and progress bars; tests call it as the CLI does.
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadModel, type LoadedModel } from "../../model.js";
import { ADAPTER_CONFIG } from "../../peft.js";
import { runSftFromFiles, SFT_ADAPTER, type SftRunOptions, type SftRunResult } from "../sft/sft-run.js";
import { runRewardModelFromFiles, RM_ADAPTER, type RmRunOptions, type RmRunResult } from "../preference/rm-run.js";
import { PPO_LOG, ppoKvBlocks, runPpoFromFiles, type PpoRunOptions, type PpoRunResult } from "../ppo/ppo-run.js";
import { TRAIN_LOG } from "../checkpoints/run-files.js";
import { trainingCurves } from "./pipeline-curves.js";
import { plotSvg } from "./plot-svg.js";
import type { DeviceKind } from "../../../native/index.js";

export type PipelineStep = 1 | 2 | 3;
export const PIPELINE_STEPS: readonly PipelineStep[] = [1, 2, 3];
export const STEP_DIRS = { 1: "step1-sft", 2: "step2-reward-model", 3: "step3-ppo" } as const;
export const STEP_NAMES = { 1: "SFT", 2: "reward model", 3: "PPO" } as const;
export const CURVES_SVG = "training-curves.svg";
/** what a later step reads of an earlier one's output */
const VALUE_HEAD = "value_head.safetensors";
/** a file each step writes last, when it has finished (checkpoints keep theirs in subdirectories) */
const FINISHED: Record<PipelineStep, string> = { 1: ADAPTER_CONFIG, 2: VALUE_HEAD, 3: join("actor", ADAPTER_CONFIG) };

/** What the pipeline fixes of each step: the base, the data, the output, the model, the stop signal. */
type Owned = "modelDir" | "dataFile" | "outDir" | "model" | "signal" | "threads" | "resume";
export type SftStepOptions = Omit<SftRunOptions, Owned>;
export type RmStepOptions = Omit<RmRunOptions, Owned>;
export type PpoStepOptions = Omit<PpoRunOptions, "actor" | "modelDir" | "rewardModel" | "promptsFile" | "outDir" | "model" | "signal" | "threads" | "resume">;

export interface PipelineOptions {
  modelDir: string;
  /** step 1's demonstrations (SFT JSONL) */
  sftData?: string;
  /** step 2's preference pairs */
  preferenceData?: string;
  /** step 3's prompts */
  prompts?: string;
  outDir: string;
  /** which steps to run, in order; an earlier step not run must have its output in outDir */
  steps: readonly PipelineStep[];
  sft: SftStepOptions;
  rm: RmStepOptions;
  ppo: PpoStepOptions;
  /** continue an interrupted pipeline: a step whose output is complete is kept, the others resume from their checkpoints */
  resume?: boolean;
  threads?: number;
  /** thread ranks each layer of the one loaded base is split over, for all three steps; default 1 */
  tensorParallel?: number;
  /** where the model is loaded: "cuda" puts its serving forward (generation) on device 0; the training steps run where the engine runs them (docs/training.md); default cpu */
  device?: DeviceKind;
  /** a model already loaded from modelDir (tests); left loaded, with no adapter added */
  model?: LoadedModel;
  signal?: AbortSignal;
  onStepStart?: (step: PipelineStep) => void;
  onStepDone?: (r: StepResult) => void;
  /** with resume: a step whose output was already complete, not run again */
  onStepKept?: (step: PipelineStep, dir: string) => void;
}

export type StepResult = { seconds: number; out: string } & (
  | { step: 1; result: SftRunResult }
  | { step: 2; result: RmRunResult }
  | { step: 3; result: PpoRunResult }
);

export interface PipelineResult {
  steps: StepResult[];
  /** the figure, or null when no step has a log to draw */
  curves: string | null;
}

export class PipelineError extends Error {
  constructor(
    message: string,
    readonly code: "missing_step_output" | "missing_data" | "bad_steps",
  ) {
    super(message);
    this.name = "PipelineError";
  }
}

export const stepDir = (outDir: string, step: PipelineStep): string => join(resolve(outDir), STEP_DIRS[step]);

/** Before anything runs: each step's data is given, and what it needs of steps not run is in outDir. */
export function checkPipeline(o: Pick<PipelineOptions, "steps" | "outDir" | "sftData" | "preferenceData" | "prompts">): void {
  const steps = [...o.steps];
  if (steps.length === 0 || steps.some((s, i) => !PIPELINE_STEPS.includes(s) || (i > 0 && s <= steps[i - 1])))
    throw new PipelineError(`steps must be some of 1 2 3, in order, each once; got ${steps.join(" ") || "none"}`, "bad_steps");
  const data = { 1: ["sftData", "--sft-data"], 2: ["preferenceData", "--preference-data"], 3: ["prompts", "--prompts"] } as const;
  for (const s of steps) if (o[data[s][0]] === undefined) throw new PipelineError(`step ${s} (${STEP_NAMES[s]}) needs ${data[s][1]}`, "missing_data");
  if (!steps.includes(3)) return;
  for (const s of [1, 2] as const) {
    const f = join(stepDir(o.outDir, s), FINISHED[s]);
    if (!steps.includes(s) && !existsSync(f))
      throw new PipelineError(`step 3 (PPO) needs step ${s}'s ${STEP_NAMES[s]} in ${stepDir(o.outDir, s)}, but ${f} does not exist: run step ${s} first (--step ${s} …), or the whole pipeline`, "missing_step_output");
  }
}

export async function runPipeline(o: PipelineOptions): Promise<PipelineResult> {
  checkPipeline(o);
  const dirs = { 1: stepDir(o.outDir, 1), 2: stepDir(o.outDir, 2), 3: stepDir(o.outDir, 3) };
  // one base for all three steps; room in the KV cache for PPO's generation batch
  const lm = o.model ?? (await loadModel(resolve(o.modelDir), { threads: o.threads, kvBlocks: o.steps.includes(3) ? ppoKvBlocks(o.ppo) : 4, tensorParallel: o.tensorParallel, device: o.device }));
  const resume = o.resume ?? false;
  const common = { modelDir: lm.dir, model: lm, signal: o.signal, threads: o.threads, resume };
  const done: StepResult[] = [];
  try {
    for (const step of o.steps) {
      if (resume && existsSync(join(dirs[step], FINISHED[step]))) {
        o.onStepKept?.(step, dirs[step]);
        continue;
      }
      o.onStepStart?.(step);
      const t0 = performance.now();
      const seconds = (): number => (performance.now() - t0) / 1000;
      let r: StepResult;
      if (step === 1) {
        const result = await runSftFromFiles({ ...o.sft, ...common, dataFile: o.sftData!, outDir: dirs[1] }).finally(() => drop(lm, SFT_ADAPTER));
        r = { step, result, seconds: seconds(), out: dirs[1] };
      } else if (step === 2) {
        const result = await runRewardModelFromFiles({ ...o.rm, ...common, dataFile: o.preferenceData!, outDir: dirs[2] }).finally(() => drop(lm, RM_ADAPTER));
        r = { step, result, seconds: seconds(), out: dirs[2] };
      } else {
        const result = await runPpoFromFiles({ ...o.ppo, actor: dirs[1], modelDir: lm.dir, rewardModel: dirs[2], promptsFile: o.prompts!, outDir: dirs[3], model: lm, signal: o.signal, threads: o.threads, resume });
        r = { step, result, seconds: seconds(), out: dirs[3] };
      }
      done.push(r);
      o.onStepDone?.(r);
    }
  } finally {
    if (!o.model) lm.dispose();
  }
  const panels = trainingCurves({ sft: join(dirs[1], TRAIN_LOG), rm: join(dirs[2], TRAIN_LOG), ppo: join(dirs[3], PPO_LOG) });
  if (panels.length === 0) return { steps: done, curves: null };
  const curves = join(resolve(o.outDir), CURVES_SVG);
  await writeFile(curves, plotSvg(panels, { title: `hybridchat pipeline: ${lm.dir}` }));
  return { steps: done, curves };
}

/** Removes a step's trained adapter from the shared model (its result is on disk). */
function drop(lm: LoadedModel, adapter: string): void {
  if (lm.native.adapters().includes(adapter)) lm.native.removeAdapter(adapter);
}
