// One `train sft` run, from files to files: validate and encode the data, pick the "auto"
// hyperparameters, start fresh or resume from the last checkpoint in the output directory,
// train, log every step to <out>/train_log.jsonl, checkpoint every epoch, save the result.
// The CLI adds argument parsing and a progress bar; tests call this directly.
import { resolve } from "node:path";
import type { DeviceKind, AdapterSpec, LinearName, ZeroStage } from "../../../native/index.js";
import { loadModel, type LoadedModel } from "../../model.js";
import { readSftJsonl, SftDataError } from "../data/sft-data.js";
import { encodeExamples, type EncodeStats, type EncodedExample } from "../data/sft-encode.js";
import { autoBatchSize, autoEpochs, autoWarmupSteps, defaultLearningRate } from "../loop/hyperparams.js";
import { stepsPerEpoch } from "../loop/batches.js";
import type { ScheduleKind } from "../loop/lr-schedule.js";
import { runSft, totalSteps, type EpochEvent, type StepEvent } from "./sft.js";
import type { WriteProgress } from "../../safetensors-writer.js";
import { dataHash, restoreOptimizer, restoreWeights, saveWeights, type RunSettings, type TrainedWeights } from "../checkpoints/run-state.js";
import { DataParallelModel, wholeView } from "../loop/data-parallel.js";
import { checkOutDir, openRunLog, resumePoint, setUpAdapter, TRAIN_LOG, trainLogged, TrainRunError } from "../checkpoints/run-files.js";

export { TRAIN_LOG };
/** the adapter's name inside the model while training (the pipeline removes it from the model it lends) */
export const SFT_ADAPTER = "sft";

export interface SftRunOptions {
  modelDir: string;
  dataFile: string;
  validationFile?: string;
  outDir: string;
  /** 0 = full fine-tuning */
  loraRank: number;
  /** default 2 × rank */
  loraAlpha?: number;
  loraDropout: number;
  targets: LinearName[];
  epochs: number | "auto";
  /** default: hyperparams.ts defaultLearningRate */
  lr?: number;
  batchSize: number | "auto";
  seed: number;
  /** default: the model's context */
  maxLength?: number;
  schedule: ScheduleKind;
  /** default: 3 % of the steps */
  warmupSteps?: number;
  /** tokens per micro-batch; default max(maxLength, 4096) */
  maxBatchTokens?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  resume: boolean;
  /** compute threads, shared out among the data-parallel ranks */
  threads?: number;
  /** data-parallel ranks, each its own model over the same checkpoint (default 1) */
  dataParallel?: number;
  /** ZeRO stage of the data-parallel ranks (default 0: plain data parallelism) */
  zeroStage?: ZeroStage;
  /** thread ranks each layer is split over (tensor parallelism); default 1 */
  tensorParallel?: number;
  /** where the model is loaded: "cuda" puts its serving forward (generation) on device 0; the training steps run where the engine runs them (docs/training.md); default cpu */
  device?: DeviceKind;
  /** a model already loaded from modelDir (tests); the run neither reloads nor disposes it */
  model?: LoadedModel;
  signal?: AbortSignal;
  onStart?: (info: SftRunInfo) => void;
  onStep?: (e: StepEvent) => void;
  onEpoch?: (e: EpochEvent) => void;
  onCheckpoint?: (dir: string) => void;
  /** how far each big file is written: a full fine-tune's checkpoints and final weights */
  onWriteProgress?: WriteProgress;
}

export interface SftRunInfo {
  examples: number;
  validationExamples: number;
  stats: EncodeStats;
  settings: RunSettings;
  totalSteps: number;
  stepsPerEpoch: number;
  /** the checkpoint resumed from, or null */
  resumedFrom: string | null;
  startStep: number;
}

export interface SftRunResult extends SftRunInfo {
  steps: number;
  lastEpoch: EpochEvent | null;
}

export { TrainRunError as SftRunError };

function encodeFile(model: LoadedModel, file: string, maxLength: number): { encoded: EncodedExample[]; stats: EncodeStats } {
  const { encoded, stats, errors } = encodeExamples({ tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength }, readSftJsonl(file));
  if (errors.length > 0) throw new SftDataError(file, errors);
  if (encoded.length === 0) throw new TrainRunError(`${file}: every example was cut to nothing by --max-length ${maxLength}; raise it`, "no_examples");
  return { encoded, stats };
}

export async function runSftFromFiles(o: SftRunOptions): Promise<SftRunResult> {
  const outDir = resolve(o.outDir);
  const modelDir = resolve(o.modelDir);
  checkOutDir(outDir, o.outDir, o.resume);
  // validate the data files before paying for the model
  readSftJsonl(o.dataFile);
  if (o.validationFile) readSftJsonl(o.validationFile);

  const ranks = o.dataParallel ?? 1;
  if (ranks > 1 && (o.tensorParallel ?? 1) > 1) throw new Error("tensor and data parallelism cannot be combined (yet): use one of them");
  const rankThreads = o.threads === undefined || ranks === 1 ? o.threads : Math.max(1, Math.floor(o.threads / ranks));
  const lm = o.model ?? (await loadModel(modelDir, { threads: rankThreads, kvBlocks: 4, tensorParallel: o.tensorParallel, device: o.device }));
  const others: LoadedModel[] = [];
  try {
    // data-parallel ranks 1..N−1: the same files mapped again (the OS shares their pages);
    // on cuda rank r on device r (its collectives then go over NCCL: native/src/model_dp.h)
    for (let r = 1; r < ranks; r++) others.push(await loadModel(modelDir, { threads: rankThreads, kvBlocks: 4, device: o.device, deviceIndex: r }));
    const maxLength = Math.min(o.maxLength ?? lm.maxContext, lm.config.maxPositions);
    const train = encodeFile(lm, o.dataFile, maxLength);
    const val = o.validationFile ? encodeFile(lm, o.validationFile, maxLength) : null;
    const n = train.encoded.length;
    const epochs = o.epochs === "auto" ? autoEpochs(n) : o.epochs;
    const batchSize = Math.min(n, o.batchSize === "auto" ? autoBatchSize(n) : o.batchSize);
    const total = totalSteps(n, { epochs, batchSize });
    const lr = o.lr ?? defaultLearningRate(o.loraRank);
    const settings: RunSettings = {
      loraRank: o.loraRank,
      loraAlpha: o.loraRank > 0 ? (o.loraAlpha ?? 2 * o.loraRank) : 0,
      loraDropout: o.loraRank > 0 ? o.loraDropout : 0,
      targets: o.loraRank > 0 ? [...o.targets] : [],
      epochs,
      batchSize,
      lr,
      schedule: o.schedule,
      warmupSteps: o.warmupSteps ?? autoWarmupSteps(total),
      maxLength,
    };
    const hash = dataHash(train.encoded);

    const resume = resumePoint(outDir, o.resume, settings, hash, o.seed);
    const resumeDir = resume?.dir ?? null;
    const state = resume?.state ?? null;

    let adapter: { name: string; spec: AdapterSpec } | null = null;
    if (o.loraRank > 0) {
      const spec: AdapterSpec = {
        lora: { rank: o.loraRank, alpha: settings.loraAlpha, dropout: settings.loraDropout, targets: [...o.targets], seed: o.seed },
        valueHead: false,
      };
      adapter = { name: SFT_ADAPTER, spec };
      setUpAdapter(lm.native, lm.config, SFT_ADAPTER, spec, resumeDir);
      for (const r of others) setUpAdapter(r.native, r.config, SFT_ADAPTER, spec, null);
    } else {
      lm.native.setTrainable({ base: true });
      for (const r of others) r.native.setTrainable({ base: true });
      if (resumeDir) {
        restoreWeights(resumeDir, lm.native, lm.config, null);
        restoreOptimizer(resumeDir, lm.native);
      }
    }

    // rank 0's weights and optimizer state (a resumed run's) are broadcast to the others here
    const dp = ranks > 1 || (o.zeroStage ?? 0) > 0 ? new DataParallelModel([lm.native, ...others.map((r) => r.native)], o.zeroStage ?? 0) : null;
    const weights: TrainedWeights = { model: dp ? wholeView(dp) : lm.native, config: lm.config, modelDir: lm.dir, adapter };
    const info: SftRunInfo = {
      examples: n,
      validationExamples: val?.encoded.length ?? 0,
      stats: train.stats,
      settings,
      totalSteps: total,
      stepsPerEpoch: stepsPerEpoch(n, batchSize),
      resumedFrom: resumeDir,
      startStep: state?.global_step ?? 0,
    };
    const runLog = await openRunLog({
      outDir,
      resumed: state,
      weights,
      state: (step, epoch) => ({ global_step: step, epoch, total_steps: total, rng: { seed: o.seed }, data_hash: hash, settings }),
      onCheckpoint: o.onCheckpoint,
      onWriteProgress: o.onWriteProgress,
    });
    o.onStart?.(info);

    const loop = {
      adapter: adapter?.name ?? null,
      epochs,
      batchSize,
      maxBatchTokens: o.maxBatchTokens ?? Math.max(maxLength, 4096),
      seed: o.seed,
      schedule: { kind: o.schedule, lr, warmupSteps: settings.warmupSteps, totalSteps: total },
      optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 0, maxGradNorm: o.maxGradNorm ?? 1 },
    };
    const { steps, lastEpoch } = await trainLogged<StepEvent, EpochEvent>(
      runLog,
      o,
      (cb) => runSft(dp ?? lm.native, train.encoded, val?.encoded ?? null, loop, cb, state?.epoch ?? 0),
      () => saveWeights(weights, outDir, o.onWriteProgress),
    );
    return { ...info, steps, lastEpoch };
  } finally {
    for (const r of others) r.dispose();
    if (!o.model) lm.dispose();
  }
}
