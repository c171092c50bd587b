// POST /v1/fine_tuning/jobs before anything is stored: the method and its
// hyperparameters, the model (the served base id), the files (known, of the format the
// method trains on). Everything a client can get wrong is answered here, as 400/404.
import { randomInt } from "node:crypto";
import { errors } from "../http/errors.js";
import type { CreateJobRequest } from "../http/schemas/fine-tuning.js";
import type { Serving } from "../serving/serving.js";
import type { Store } from "../store/store.js";
import type { JobMethod } from "../store/jobs.js";
import type { TrainingMethod } from "./methods/method.js";
import { KNOWN_METHOD_TYPES } from "./methods/index.js";
import { modelReferences } from "./model-references.js";

/** the literal training_file that trains on the collected feedback */
export const FEEDBACK_FILE = "feedback";

/** ft:<base>:<suffix>:<job-id>, as OpenAI names fine-tuned models (empty suffix: "::") */
export const fineTunedModelId = (base: string, suffix: string | null, jobId: string): string => `ft:${base}:${suffix ?? ""}:${jobId}`;

export interface CheckedJob {
  method: TrainingMethod;
  jobMethod: JobMethod;
  seed: number;
}

function checkFile(store: Store, id: string, param: string, method: TrainingMethod): void {
  if (id === FEEDBACK_FILE && param === "training_file") return;
  const f = store.files.get(id);
  if (!f) throw errors.fileNotFound(id, param);
  if (f.purpose !== "fine-tune") throw errors.invalidFile(`File ${id} has purpose '${f.purpose}'; fine-tuning needs a file uploaded with purpose 'fine-tune'.`, param);
  const accepts = method.accepts ?? [method.format];
  const kind = (fmt: string): string => (fmt === "dpo" ? "preference (DPO)" : fmt === "prompts" ? "prompt" : "supervised");
  if (!accepts.includes(f.format))
    throw errors.invalidFile(`File ${id} holds ${kind(f.format)} lines; method '${method.type}' trains on ${accepts.map(kind).join(" or ")} lines.`, param);
}

export function checkJobRequest(body: CreateJobRequest, serving: Serving, store: Store, methods: ReadonlyMap<string, TrainingMethod>): CheckedJob {
  const type = body.method?.type ?? "supervised";
  const method = methods.get(type);
  if (!method) {
    const known = (KNOWN_METHOD_TYPES as readonly string[]).includes(type);
    throw errors.invalidRequest(
      `method.type '${type}' is ${known ? "not supported by this server yet" : "unknown"}; supported: ${[...methods.keys()].join(", ")}.`,
      "method.type",
      "unsupported_method",
    );
  }
  if (body.method && body.hyperparameters) throw errors.invalidRequest("Give hyperparameters in method, not at the top level as well.", "hyperparameters");
  const params = body.method ? (body.method as Record<string, { hyperparameters?: Record<string, unknown> | null } | null | undefined>)[type] : null;
  const raw: Record<string, unknown> = (body.method ? params?.hyperparameters : body.hyperparameters) ?? {};
  const bad = method.checkHyperparameters(raw);
  if (bad) throw errors.invalidRequest(bad, body.method ? `method.${type}.hyperparameters` : "hyperparameters");
  const badRef = method.checkReferences?.(raw, modelReferences(store));
  if (badRef) throw errors.invalidRequest(badRef.message, `method.${type}.hyperparameters.${badRef.param}`, "invalid_reference");

  if (body.model !== serving.servedModelName) {
    if (serving.variants.has(body.model))
      throw errors.invalidRequest(`Model ${body.model} is a fine-tuned version; fine-tune the base model ${serving.servedModelName} instead.`, "model", "model_not_fine_tunable");
    throw errors.modelNotFound(body.model, [serving.servedModelName]);
  }
  checkFile(store, body.training_file, "training_file", method);
  if (body.validation_file) checkFile(store, body.validation_file, "validation_file", method);
  if (body.feedback_filter && body.training_file !== FEEDBACK_FILE)
    throw errors.invalidRequest(`feedback_filter applies only to training_file "${FEEDBACK_FILE}".`, "feedback_filter");
  return { method, jobMethod: { type, hyperparameters: method.withDefaults(raw) }, seed: body.seed ?? randomInt(0, 2 ** 31 - 1) };
}
