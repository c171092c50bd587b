// One `train rm` run, from files to files: the preference pairs train a reward adapter (LoRA
// + value head) on the frozen base; the result is a PEFT adapter directory with
// value_head.safetensors beside it, which scoreSequences (rm.ts) reads through
// engine/peft.ts loadPeftAdapter.
import { DEFAULT_LORA_LR } from "../loop/hyperparams.js";
import { loadForPairs, preparePairRun, type PrefRunInfo, type PrefRunOptions } from "./pref-run.js";
import { trainLogged } from "../checkpoints/run-files.js";
import { trainRewardModel, type RmEpochEvent, type RmStepEvent } from "./rm.js";

/** the adapter's name inside the model while training */
export const RM_ADAPTER = "reward";

export interface RmRunOptions extends PrefRunOptions {
  onStep?: (e: RmStepEvent) => void;
  onEpoch?: (e: RmEpochEvent) => void;
}

export interface RmRunResult extends PrefRunInfo {
  steps: number;
  lastEpoch: RmEpochEvent | null;
}

export async function runRewardModelFromFiles(o: RmRunOptions): Promise<RmRunResult> {
  const lm = await loadForPairs(o);
  try {
    const run = await preparePairRun(o, lm, { adapter: RM_ADAPTER, method: "rm", valueHead: true, defaultLr: DEFAULT_LORA_LR });
    const { steps, lastEpoch } = await trainLogged<RmStepEvent, RmEpochEvent>(
      run.log,
      o,
      (cb) => trainRewardModel(lm.native, run.train, run.validation, { ...run.loop, adapter: RM_ADAPTER }, cb, run.startEpoch),
      run.finish,
    );
    return { ...run.info, steps, lastEpoch };
  } finally {
    if (!o.model) lm.dispose();
  }
}
