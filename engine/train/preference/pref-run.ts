// What a reward-model run and a DPO run from files share: validate and encode the preference
// files, pick the "auto" hyperparameters, add (or restore) the trained adapter, open the log,
// and write the result. rm-run.ts and dpo-run.ts each add their loop.
import { resolve } from "node:path";
import type { DeviceKind, AdapterSpec, LinearName } from "../../../native/index.js";
import { loadModel, type LoadedModel } from "../../model.js";
import type { PeftAdapterData } from "../../peft.js";
import { encodePairs, PreferenceDataError, readPreferenceJsonl, type EncodedPair } from "../data/pref-data.js";
import type { EncodeStats, EncodedExample } from "../data/sft-encode.js";
import { autoBatchSize, autoEpochs, autoWarmupSteps } from "../loop/hyperparams.js";
import { stepsPerEpoch } from "../loop/batches.js";
import type { ScheduleKind } from "../loop/lr-schedule.js";
import type { LoopSettings } from "../loop/loop.js";
import { dataHash, saveWeights, type RunSettings, type TrainedWeights } from "../checkpoints/run-state.js";
import { checkOutDir, openRunLog, resumePoint, setUpAdapter, TrainRunError, type RunLog } from "../checkpoints/run-files.js";

export interface PrefRunOptions {
  modelDir: string;
  dataFile: string;
  /** held-out pairs evaluated after every epoch */
  validationFile?: string;
  outDir: string;
  loraRank: number;
  /** default 2 × rank */
  loraAlpha?: number;
  loraDropout?: number;
  targets: LinearName[];
  epochs: number | "auto";
  /** default: the method's */
  lr?: number;
  /** pairs per optimizer step */
  batchSize: number | "auto";
  seed: number;
  /** default: the model's context */
  maxLength?: number;
  schedule?: ScheduleKind;
  /** default: 3 % of the steps */
  warmupSteps?: number;
  /** tokens per micro-batch (both answers of a pair run together); default max(2 × maxLength, 4096) */
  maxBatchTokens?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  resume: boolean;
  threads?: number;
  /** thread ranks each layer is split over (tensor parallelism); default 1 */
  tensorParallel?: number;
  /** where the model is loaded: "cuda" puts its serving forward (generation) on device 0; the training steps run where the engine runs them (docs/training.md); default cpu */
  device?: DeviceKind;
  /** a model already loaded from modelDir (tests); the run neither reloads nor disposes it */
  model?: LoadedModel;
  signal?: AbortSignal;
  onStart?: (info: PrefRunInfo) => void;
  onCheckpoint?: (dir: string) => void;
}

export interface PrefRunInfo {
  pairs: number;
  validationPairs: number;
  stats: EncodeStats;
  settings: RunSettings;
  totalSteps: number;
  stepsPerEpoch: number;
  resumedFrom: string | null;
  startStep: number;
}

/** What a method says about its run: its adapter and the settings only it has. */
export interface PrefMethod {
  /** the adapter's name inside the model while training */
  adapter: string;
  method: "rm" | "dpo";
  valueHead: boolean;
  defaultLr: number;
  /** starting weights (DPO from an SFT adapter), whose LoRA shape replaces the options' */
  init?: { dir: string; data: PeftAdapterData };
  extra?: Pick<RunSettings, "beta">;
}

/** A prepared run: the data, the loop settings, the adapter set up, the log open. */
export interface PrefRun {
  lm: LoadedModel;
  train: EncodedPair[];
  validation: EncodedPair[] | null;
  info: PrefRunInfo;
  loop: LoopSettings & { maxBatchTokens: number };
  startEpoch: number;
  log: RunLog;
  finish(): Promise<void>;
}

function encodeFile(lm: LoadedModel, file: string, maxLength: number): { encoded: EncodedPair[]; stats: EncodeStats } {
  const { encoded, stats, errors } = encodePairs({ tokenizer: lm.tokenizer, chatTemplate: lm.chatTemplate, maxLength }, readPreferenceJsonl(file));
  if (errors.length > 0) throw new PreferenceDataError(file, errors);
  if (encoded.length === 0) throw new TrainRunError(`${file}: every pair was cut to nothing by --max-length ${maxLength}; raise it`, "no_examples");
  return { encoded, stats };
}

/** Checks --out and validates the data files (before paying for the model), then loads the model unless one is lent. */
export async function loadForPairs(o: PrefRunOptions): Promise<LoadedModel> {
  checkOutDir(resolve(o.outDir), o.outDir, o.resume);
  readPreferenceJsonl(o.dataFile);
  if (o.validationFile) readPreferenceJsonl(o.validationFile);
  return o.model ?? (await loadModel(resolve(o.modelDir), { threads: o.threads, kvBlocks: 4, tensorParallel: o.tensorParallel, device: o.device }));
}

export async function preparePairRun(o: PrefRunOptions, lm: LoadedModel, m: PrefMethod): Promise<PrefRun> {
  const outDir = resolve(o.outDir);
  const maxLength = Math.min(o.maxLength ?? lm.maxContext, lm.config.maxPositions);
  const train = encodeFile(lm, o.dataFile, maxLength);
  const val = o.validationFile ? encodeFile(lm, o.validationFile, maxLength) : null;
  const n = train.encoded.length;
  const epochs = o.epochs === "auto" ? autoEpochs(n) : o.epochs;
  const batchSize = Math.min(n, o.batchSize === "auto" ? autoBatchSize(n) : o.batchSize);
  const total = epochs * stepsPerEpoch(n, batchSize);
  const initLora = m.init?.data.spec.lora ?? null;
  const lora = initLora
    ? { rank: initLora.rank, alpha: initLora.alpha, dropout: o.loraDropout ?? 0, targets: [...initLora.targets] }
    : { rank: o.loraRank, alpha: o.loraAlpha ?? 2 * o.loraRank, dropout: o.loraDropout ?? 0, targets: [...o.targets] };
  const schedule = o.schedule ?? "linear";
  const settings: RunSettings = {
    loraRank: lora.rank,
    loraAlpha: lora.alpha,
    loraDropout: lora.dropout,
    targets: lora.targets,
    epochs,
    batchSize,
    lr: o.lr ?? m.defaultLr,
    schedule,
    warmupSteps: o.warmupSteps ?? autoWarmupSteps(total),
    maxLength,
    method: m.method,
    ...(m.init ? { initAdapter: resolve(m.init.dir) } : {}),
    ...m.extra,
  };
  const hash = dataHash(train.encoded.flatMap((p): EncodedExample[] => [p.chosen, p.rejected]));
  const resume = resumePoint(outDir, o.resume, settings, hash, o.seed);
  const spec: AdapterSpec = { lora: { ...lora, seed: o.seed }, valueHead: m.valueHead };
  setUpAdapter(lm.native, lm.config, m.adapter, spec, resume?.dir ?? null, m.init?.data ?? null);
  const weights: TrainedWeights = { model: lm.native, config: lm.config, modelDir: lm.dir, adapter: { name: m.adapter, spec } };
  const info: PrefRunInfo = {
    pairs: n,
    validationPairs: val?.encoded.length ?? 0,
    stats: train.stats,
    settings,
    totalSteps: total,
    stepsPerEpoch: stepsPerEpoch(n, batchSize),
    resumedFrom: resume?.dir ?? null,
    startStep: resume?.state.global_step ?? 0,
  };
  const log = await openRunLog({
    outDir,
    resumed: resume?.state ?? null,
    weights,
    state: (step, epoch) => ({ global_step: step, epoch, total_steps: total, rng: { seed: o.seed }, data_hash: hash, settings }),
    onCheckpoint: o.onCheckpoint,
  });
  o.onStart?.(info);
  return {
    lm,
    train: train.encoded,
    validation: val?.encoded ?? null,
    info,
    loop: {
      epochs,
      batchSize,
      seed: o.seed,
      schedule: { kind: schedule, lr: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: total },
      optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 0, maxGradNorm: o.maxGradNorm ?? 1 },
      maxBatchTokens: o.maxBatchTokens ?? Math.max(2 * maxLength, 4096),
    },
    startEpoch: resume?.state.epoch ?? 0,
    log,
    finish: () => saveWeights(weights, outDir),
  };
}
