// One `train dpo` run, from files to files: the preference pairs train a policy adapter with
// DPO against the reference (the base; with `initAdapter`, the SFT adapter the policy starts
// from, loaded a second time as a frozen adapter). The result is a PEFT adapter directory.
import { resolve } from "node:path";
import { addAdapterWithData, readPeftAdapter, type PeftAdapterData } from "../../peft.js";
import { DEFAULT_DPO_LR } from "../loop/hyperparams.js";
import { loadForPairs, preparePairRun, type PrefRunInfo, type PrefRunOptions } from "./pref-run.js";
import { trainLogged } from "../checkpoints/run-files.js";
import { DEFAULT_BETA, trainDpo, type DpoEpochEvent, type DpoStepEvent } from "./dpo.js";

/** the adapters' names inside the model while training */
export const DPO_ADAPTER = "dpo";
const REFERENCE_ADAPTER = "dpo-reference";

export interface DpoRunOptions extends PrefRunOptions {
  /** default 0.1 */
  beta?: number;
  /** a PEFT adapter directory (an SFT result) the policy starts from and the reference is */
  initAdapter?: string;
  onStep?: (e: DpoStepEvent) => void;
  onEpoch?: (e: DpoEpochEvent) => void;
}

export interface DpoRunResult extends PrefRunInfo {
  steps: number;
  lastEpoch: DpoEpochEvent | null;
}

export async function runDpoFromFiles(o: DpoRunOptions): Promise<DpoRunResult> {
  const lm = await loadForPairs(o);
  const added: string[] = [];
  try {
    let init: { dir: string; data: PeftAdapterData } | undefined;
    if (o.initAdapter) {
      const data = readPeftAdapter(lm.config, resolve(o.initAdapter));
      // the policy is a LoRA; a value head the file may carry plays no part in DPO
      const lora: PeftAdapterData = { spec: { lora: data.spec.lora, valueHead: false }, params: data.params.filter((p) => p.param !== "value_head") };
      addAdapterWithData(lm.native, REFERENCE_ADAPTER, lora);
      added.push(REFERENCE_ADAPTER);
      init = { dir: o.initAdapter, data: lora };
    }
    const beta = o.beta ?? DEFAULT_BETA;
    const run = await preparePairRun(o, lm, { adapter: DPO_ADAPTER, method: "dpo", valueHead: false, defaultLr: DEFAULT_DPO_LR, init, extra: { beta } });
    added.push(DPO_ADAPTER);
    const reference = init ? REFERENCE_ADAPTER : null;
    const { steps, lastEpoch } = await trainLogged<DpoStepEvent, DpoEpochEvent>(
      run.log,
      o,
      (cb) => trainDpo(lm.native, run.train, run.validation, { ...run.loop, adapter: DPO_ADAPTER, reference, beta }, cb, run.startEpoch),
      run.finish,
    );
    return { ...run.info, steps, lastEpoch };
  } finally {
    if (!o.model) lm.dispose();
    // a model the caller lent keeps the trained policy ("dpo"), not the reference copy
    else if (added.includes(REFERENCE_ADAPTER)) lm.native.removeAdapter(REFERENCE_ADAPTER);
  }
}
