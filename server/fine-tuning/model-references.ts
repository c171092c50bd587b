// The models a job's hyperparameters may name, resolved from the store: a reward model is a
// succeeded reward_model job, named by its job id, by the ft: model id the job's checkpoints
// carry (ft:<base>:<suffix>:<job-id>) or by one of its checkpoint ids (…:ckpt-step-N); it
// resolves to that checkpoint's adapter directory (the newest one unless a step is named).
import { existsSync } from "node:fs";
import type { Store } from "../store/store.js";
import type { ModelReferences } from "./methods/method.js";

const CHECKPOINT = /^(ft:.*):ckpt-step-(\d+)$/;

export function modelReferences(store: Store): ModelReferences {
  return {
    rewardModel(ref) {
      const ckpt = CHECKPOINT.exec(ref);
      const modelId = ckpt ? ckpt[1] : ref;
      const jobId = modelId.startsWith("ft:") ? modelId.slice(modelId.lastIndexOf(":") + 1) : modelId;
      const job = store.jobs.get(jobId);
      if (!job) return { error: `reward_model '${ref}' is no fine-tuning job or model of this server; name a succeeded reward_model job.` };
      if (job.method.type !== "reward_model") return { error: `reward_model '${ref}' names job ${job.id}, a ${job.method.type} job; name a succeeded reward_model job.` };
      if (job.status !== "succeeded") return { error: `reward_model '${ref}' names job ${job.id}, which is ${job.status}; name a succeeded reward_model job.` };
      const items = store.jobs.checkpoints(job.id, { limit: 100 })?.items ?? [];
      const hit = ckpt ? items.find((c) => c.fineTunedModelCheckpoint === ref) : items[0];
      if (!hit) return { error: `reward_model '${ref}': job ${job.id} has no such checkpoint.` };
      if (!existsSync(hit.dir)) return { error: `reward_model '${ref}': the checkpoint's files are gone (${hit.dir}).` };
      return { dir: hit.dir };
    },
  };
}
