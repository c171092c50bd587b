// OpenAI's File, FineTuningJob, event and checkpoint objects, from the store's records.
import type { FileRecord } from "../store/files.js";
import type { JobCheckpoint, JobEvent, JobRecord } from "../store/jobs.js";

export interface FileBody {
  object: "file";
  id: string;
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: "processed";
  status_details: null;
  expires_at: null;
}

export interface JobErrorBody {
  code: string;
  message: string;
  param: string | null;
}

export interface JobBody {
  object: "fine_tuning.job";
  id: string;
  created_at: number;
  model: string;
  status: JobRecord["status"];
  training_file: string;
  validation_file: string | null;
  fine_tuned_model: string | null;
  finished_at: number | null;
  hyperparameters: Record<string, number | string>;
  method: { type: string } & Record<string, unknown>;
  error: JobErrorBody | null;
  organization_id: string;
  result_files: string[];
  trained_tokens: number | null;
  seed: number;
  user_provided_suffix: string | null;
  estimated_finish: null;
  integrations: null;
  metadata: null;
}

export interface JobEventBody {
  object: "fine_tuning.job.event";
  id: string;
  created_at: number;
  level: JobEvent["level"];
  message: string;
  type: JobEvent["type"];
  data: Record<string, unknown> | null;
}

export interface CheckpointBody {
  object: "fine_tuning.job.checkpoint";
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  fine_tuning_job_id: string;
  step_number: number;
  metrics: Record<string, number | null>;
}

export const fileBody = (f: FileRecord): FileBody => ({
  object: "file",
  id: f.id,
  bytes: f.bytes,
  created_at: f.createdAt,
  filename: f.filename,
  purpose: f.purpose,
  status: "processed",
  status_details: null,
  expires_at: null,
});

export const jobBody = (j: JobRecord): JobBody => ({
  object: "fine_tuning.job",
  id: j.id,
  created_at: j.createdAt,
  model: j.model,
  status: j.status,
  training_file: j.trainingFile,
  validation_file: j.validationFile,
  fine_tuned_model: j.fineTunedModel,
  finished_at: j.finishedAt,
  hyperparameters: j.method.hyperparameters,
  method: { type: j.method.type, [j.method.type]: { hyperparameters: j.method.hyperparameters } },
  error: j.error,
  organization_id: "org-hybridchat",
  result_files: j.resultFiles,
  trained_tokens: j.trainedTokens,
  seed: j.seed,
  user_provided_suffix: j.suffix,
  estimated_finish: null,
  integrations: null,
  metadata: null,
});

export const eventBody = (e: JobEvent): JobEventBody => ({
  object: "fine_tuning.job.event",
  id: e.id,
  created_at: e.createdAt,
  level: e.level,
  message: e.message,
  type: e.type,
  data: e.data,
});

export const checkpointBody = (c: JobCheckpoint): CheckpointBody => ({
  object: "fine_tuning.job.checkpoint",
  id: c.id,
  created_at: c.createdAt,
  fine_tuned_model_checkpoint: c.fineTunedModelCheckpoint,
  fine_tuning_job_id: c.jobId,
  step_number: c.stepNumber,
  metrics: c.metrics,
});
