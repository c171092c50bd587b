// Fine-tuning jobs in the serving process, on the serving weights. One job runs at a time
// (a FIFO queue); its method trains a new LoRA adapter on the native model that serves,
// every native call a runExclusive task of the engine, so requests keep being answered
// between training calls. A finished job saves its adapter under
// <data-dir>/versions/<job-id>/ (PEFT layout), records the version and publishes it as a
// served model id, without a reload: the trained adapter is the one served.
//
// Every status change is committed before it is announced. A failing job is caught here:
// its adapter is removed, the job is `failed` with the reason, serving goes on. A job that
// did not succeed (failed or cancelled) keeps nothing on disk: once it has stopped, its
// directory (data copies, checkpoints) and any half-written version go, with its
// checkpoint rows; its events stay (docs/fine-tuning-jobs.md, "What a job leaves").
import { EventEmitter } from "node:events";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { addAdapter, savePeftAdapter } from "../../engine/peft.js";
import type { LoadedModel } from "../../engine/model.js";
import { exclusiveTraining, exclusively } from "../../engine/train/loop/exclusive-model.js";
import { TrainingInterrupted, type TrainingCalls } from "../../engine/train/sft/sft.js";
import { SftDataError } from "../../engine/train/data/sft-data.js";
import { errors } from "../http/errors.js";
import { nowSeconds } from "../http/openai-shapes.js";
import { readyServing } from "../http/request-context.js";
import type { CreateJobRequest } from "../http/schemas/fine-tuning.js";
import type { ServingSlot } from "../serving/serving.js";
import { exportLines, storedCompletionTools } from "../store/export.js";
import { isFinal, jobEvent, jobId, type JobError, type JobEvent, type JobPatch, type JobRecord } from "../store/jobs.js";
import { trainable, type FeedbackSource } from "../store/feedback.js";
import type { Store } from "../store/store.js";
import type { Owner } from "../store/types.js";
import { checkJobRequest, FEEDBACK_FILE, fineTunedModelId } from "./job-requests.js";
import type { JobEngine, MethodReporter, TrainingMethod } from "./methods/method.js";
import { modelReferences } from "./model-references.js";
import type { FileContents } from "./training-files.js";
import type { TrainingFileCheck } from "./training-file-check.js";
import { TrainingFileError } from "./training-lines.js";
import { publishVersion } from "./versions.js";

export interface JobRunnerOptions {
  store: Store;
  slot: ServingSlot;
  engine: JobEngine;
  model: LoadedModel;
  files: FileContents;
  /** a job's training file is checked on it (off the event loop) before the job is queued */
  check: TrainingFileCheck;
  /** versions/ and jobs/ live here */
  dataDir: string;
  methods: ReadonlyMap<string, TrainingMethod>;
  /** training_file "feedback" takes these sources, approved only (--rlhf-sources) */
  trainingSources: readonly FeedbackSource[];
  /**
   * The check a job's trained adapter must pass before it is saved and published, if the
   * job has one (the continuous-RLHF policy's not-worse gate); read from the job's record,
   * so a job queued before a restart is still gated after it.
   */
  gateFor?: (job: JobRecord) => JobGate | null;
  /** each optimizer step of a job (GET /metrics' job gauges) */
  onStep?: (jobId: string, method: string, metrics: Readonly<Record<string, number>>) => void;
  /** a job reached a final status (its per-job metric series are dropped) */
  onEnd?: (jobId: string, method: string) => void;
}

/** A trained candidate judged before it is published: pass or not, and why (a job event). */
export type JobGate = (candidate: { adapter: string; training: TrainingCalls; validationText: string | null }) => Promise<{ pass: boolean; message: string }>;

/** What subscribers of a job hear: each new event, and the job whenever its status changes. */
export type JobUpdate = { kind: "event"; event: JobEvent } | { kind: "status"; job: JobRecord };

/** extra rows committed with a status change, and what to do once it is committed */
interface StatusHooks {
  write?: () => void;
  committed?: () => void;
}

/** how long step metrics wait to be stored together */
const METRICS_FLUSH_MS = 1000;

class JobFailure extends Error {
  constructor(readonly error: JobError) {
    super(error.message);
  }
}

const RESTARTED: JobError = {
  code: "server_restarted",
  message: "The server restarted while this job was running; its partial training was discarded. Create a new job to train again.",
  param: null,
};
const SHUT_DOWN: JobError = { code: "server_shutdown", message: "The server shut down while this job was running.", param: null };

function failureOf(e: unknown): JobError {
  if (e instanceof JobFailure) return e.error;
  if (e instanceof SftDataError || e instanceof TrainingFileError) return { code: "invalid_training_file", message: e.message, param: "training_file" };
  const code = typeof (e as { code?: unknown })?.code === "string" ? (e as { code: string }).code : "training_failed";
  return { code, message: `Training failed: ${(e as Error)?.message ?? String(e)}`, param: null };
}

export class JobRunner {
  /** emits JobUpdate under the job's id */
  readonly updates = new EventEmitter().setMaxListeners(0);
  readonly #o: JobRunnerOptions;
  readonly #queue: string[] = [];
  #current: { id: string; abort: AbortController } | null = null;
  /** step metrics announced but not stored yet */
  readonly #metrics: JobEvent[] = [];
  #flushTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | null = null;
  #closing = false;
  /** jobs whose files are being copied and checked (#validate discards a cancelled one itself) */
  readonly #validating = new Set<string>();
  /** job directories being removed (#discard), awaited by close() while the store is open */
  readonly #discarding = new Set<Promise<void>>();

  constructor(o: JobRunnerOptions) {
    this.#o = o;
  }

  /** After a restart: running jobs failed (their adapter was only in memory), waiting ones queued again. */
  recover(): void {
    const { jobs } = this.#o.store;
    for (const j of jobs.withStatus("running")) {
      this.#finish(j.id, { status: "failed", error: RESTARTED }, "error", RESTARTED.message);
      void this.#discard(j.id);
    }
    // what an earlier run (or a crash) left of jobs that did not succeed
    const dirs = existsSync(join(this.#o.dataDir, "jobs")) ? readdirSync(join(this.#o.dataDir, "jobs")) : [];
    for (const name of dirs) {
      const status = jobs.get(name)?.status;
      if (status === undefined || status === "failed" || status === "cancelled") void this.#discard(name);
    }
    for (const j of jobs.withStatus("validating_files")) setImmediate(() => void this.#validate(j.id));
    for (const j of jobs.withStatus("queued")) this.#queue.push(j.id);
    this.#pump();
  }

  /** `owner`: the key id that asked (null: the server itself, or no keys). */
  create(body: CreateJobRequest, owner: Owner): JobRecord {
    const { store, slot, methods } = this.#o;
    if (this.#closing) throw errors.shuttingDown();
    const serving = readyServing(slot);
    const { jobMethod, seed } = checkJobRequest(body, serving, store, methods);
    const id = jobId();
    const job = store.transaction(() => {
      const j = store.jobs.insert({
        id,
        createdAt: nowSeconds(),
        model: body.model,
        trainingFile: body.training_file,
        validationFile: body.validation_file ?? null,
        feedbackFilter: body.training_file === FEEDBACK_FILE ? (body.feedback_filter ?? {}) : null,
        suffix: body.suffix ?? null,
        seed,
        method: jobMethod,
        status: "validating_files",
        owner,
      });
      this.#event(id, "info", `Validating training file: ${body.training_file}`);
      return j;
    });
    setImmediate(() => void this.#validate(id));
    return job;
  }

  /** Cancels a job that has not finished (409 otherwise); a running one stops at its next step. */
  cancel(id: string): JobRecord {
    const job = this.#o.store.jobs.get(id);
    if (!job) throw errors.jobNotFound(id);
    if (isFinal(job.status)) throw errors.jobNotCancellable(id, job.status);
    const out = this.#finish(id, { status: "cancelled" }, "info", "Job cancelled");
    // a running job is discarded by its run once it has stopped; a waiting one at once
    if (this.#current?.id === id) this.#current.abort.abort();
    else if (!this.#validating.has(id)) void this.#discard(id);
    return out;
  }

  /** Settles when no job runs (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops the running job (it is failed: the server shut down) and takes no more. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#queue.length = 0;
    this.#current?.abort.abort();
    await this.idle();
    await Promise.allSettled([...this.#discarding]);
    this.flushEvents();
  }

  #jobDir(id: string): string {
    return join(this.#o.dataDir, "jobs", id);
  }

  /** A finished job's data copy and checkpoints, removed (continuous RLHF's --rlhf-keep). */
  discardData(id: string): Promise<void> {
    return this.#discard(id);
  }

  /** What a job that did not succeed leaves: nothing but its row and events (close() waits for it). */
  #discard(id: string): Promise<void> {
    const done = (async () => {
      await rm(this.#jobDir(id), { recursive: true, force: true });
      await rm(join(this.#o.dataDir, "versions", `${id}.tmp`), { recursive: true, force: true });
      this.#o.store.jobs.deleteCheckpoints(id);
    })()
      // best effort: what is not removed now is removed at the next start (recover)
      .catch(() => undefined)
      .finally(() => this.#discarding.delete(done));
    this.#discarding.add(done);
    return done;
  }

  /**
   * Stores an event; the caller announces it once its transaction is committed. Step
   * metrics come many a second and are the exception: announced here at once and stored
   * in batches (METRICS_FLUSH_MS), each batch before any other event so the stored order
   * is the order they happened (a crash loses at most the last batch, of a job that is
   * then failed anyway), instead of one synchronous commit per step on the event loop.
   */
  #event(jobId: string, level: JobEvent["level"], message: string, type: JobEvent["type"] = "message", data: Record<string, unknown> | null = null): JobEvent {
    const event = jobEvent({ jobId, createdAt: nowSeconds(), level, message, type, data });
    if (type === "metrics") {
      this.#metrics.push(event);
      this.#flushTimer ??= setTimeout(() => this.flushEvents(), METRICS_FLUSH_MS);
      this.#announce(jobId, { kind: "event", event });
    } else {
      this.flushEvents();
      this.#o.store.jobs.addEvents([event]);
    }
    return event;
  }

  /** An informational event, stored, then announced. */
  #say(jobId: string, message: string): void {
    this.#announce(jobId, { kind: "event", event: this.#event(jobId, "info", message) });
  }

  /** Stores the step metrics not stored yet (before a replay of the stored events). */
  flushEvents(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#metrics.length > 0) this.#o.store.jobs.addEvents(this.#metrics.splice(0));
  }

  #announce(jobId: string, u: JobUpdate): void {
    this.updates.emit(jobId, u);
  }

  /** A final status with its event, committed together, then announced. */
  #finish(id: string, patch: { status: "succeeded" | "failed" | "cancelled"; error?: JobError } & Partial<Pick<JobRecord, "fineTunedModel" | "trainedTokens">>, level: JobEvent["level"], message: string, also: StatusHooks = {}): JobRecord {
    const job = this.#status(id, { ...patch, finishedAt: nowSeconds() }, message, level, also);
    this.#o.onEnd?.(id, job.method.type);
    return job;
  }

  /**
   * A status change with its event (and `also.write`'s rows) committed in one
   * transaction; then `also.committed` runs, then the change is announced.
   */
  #status(id: string, patch: JobPatch, message: string, level: JobEvent["level"] = "info", also: StatusHooks = {}): JobRecord {
    const { store } = this.#o;
    const [job, event] = store.transaction(() => {
      also.write?.();
      return [store.jobs.update(id, patch), this.#event(id, level, message)] as const;
    });
    also.committed?.();
    this.#announce(id, { kind: "event", event });
    this.#announce(id, { kind: "status", job });
    return job;
  }

  /**
   * validating_files → queued: the job's data is copied into its own directory, so a file
   * deleted later (or feedback collected later) does not change what it trains on.
   */
  async #validate(id: string): Promise<void> {
    if (this.#closing) return; // the store may be closed already
    const { store } = this.#o;
    const job = store.jobs.get(id);
    if (!job || job.status !== "validating_files") return;
    this.#validating.add(id);
    try {
      const dir = this.#jobDir(id);
      await mkdir(dir, { recursive: true });
      const method = this.#o.methods.get(job.method.type)!;
      const training = join(dir, "training.jsonl");
      if (job.trainingFile === FEEDBACK_FILE) {
        const train = [...exportLines(store.feedback, method.format, { ...job.feedbackFilter, ...trainable(this.#o.trainingSources) }, storedCompletionTools(store.completions))].join("");
        if (train === "") throw new JobFailure({ code: "no_feedback", message: `No collected feedback gives ${method.format === "sft" ? "supervised examples (corrections or +1 ratings)" : "preference pairs"} to train on.`, param: "training_file" });
        await writeFile(training, train);
      } else await this.#copyFile(job.trainingFile, "training_file", training);
      if (job.validationFile) await this.#copyFile(job.validationFile, "validation_file", join(dir, "validation.jsonl"));
      // line by line on a worker thread: a big file never holds up serving
      await this.#o.check.check(training);
      if (this.#closing) return;
      if (store.jobs.get(id)?.status !== "validating_files") return void (await this.#discard(id)); // cancelled meanwhile
      this.#status(id, { status: "queued" }, "Files validated; job queued");
      this.#queue.push(id);
      this.#pump();
    } catch (e) {
      if (this.#closing) return;
      if (store.jobs.get(id)?.status === "validating_files") {
        const err = failureOf(e);
        this.#finish(id, { status: "failed", error: err }, "error", err.message);
      }
      await this.#discard(id);
    } finally {
      this.#validating.delete(id);
    }
  }

  /** Copies uploaded file `fileId` to `to` (by the kernel, off the event loop). */
  async #copyFile(fileId: string, param: string, to: string): Promise<void> {
    const missing = () => new JobFailure({ code: "file_not_found", message: `File ${fileId} was deleted before the job could read it.`, param });
    if (!this.#o.store.files.get(fileId)) throw missing();
    try {
      await copyFile(this.#o.files.path(fileId), to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw missing();
      throw e;
    }
  }

  #pump(): void {
    if (this.#running || this.#closing) return;
    const id = this.#queue.shift();
    if (id === undefined) return;
    this.#running = this.#run(id).finally(() => {
      this.#running = null;
      this.#current = null;
      this.#pump();
    });
  }

  async #run(id: string): Promise<void> {
    const { store, engine, model, slot, dataDir } = this.#o;
    const queued = store.jobs.get(id);
    if (!queued || queued.status !== "queued") return;
    const method = this.#o.methods.get(queued.method.type)!;
    const adapter = fineTunedModelId(queued.model, queued.suffix, id);
    const abort = new AbortController();
    this.#current = { id, abort };
    const native = model.native;
    // a job trains the served model where it is loaded (serve --device)
    const where = native.device();
    this.#status(id, { status: "running", startedAt: nowSeconds() }, `Fine-tuning job started (on ${where.kind === "cuda" ? (where.devices > 1 ? `CUDA devices 0-${where.devices - 1}, ${where.name}, ${where.devices} tensor-parallel ranks` : `CUDA device 0, ${where.name}`) : "the CPU"})`);
    const movedAtStart = native.weightBytesMoved();
    let added = false;
    try {
      await exclusively(engine, () => {
        addAdapter(native, adapter, method.adapterSpec(queued.seed));
        added = true;
        native.setTrainable({ adapter });
      });
      const dir = this.#jobDir(id);
      const text = (f: string): string => readFileSync(join(dir, f), "utf8");
      const training = exclusiveTraining(engine, native);
      const validationText = queued.validationFile ? text("validation.jsonl") : null;
      const result = await method.run({
        model,
        engine,
        references: modelReferences(store),
        training,
        adapter,
        trainText: text("training.jsonl"),
        validationText,
        hyperparameters: queued.method.hyperparameters,
        seed: queued.seed,
        signal: abort.signal,
        report: this.#reporter(id, adapter, queued.model, method.type),
      });
      if (abort.signal.aborted) throw new TrainingInterrupted(-1);
      const gate = this.#o.gateFor?.(queued);
      if (gate) {
        const verdict = await gate({ adapter, training, validationText });
        if (!verdict.pass) throw new JobFailure({ code: "candidate_not_better", message: verdict.message, param: null });
        this.#say(id, verdict.message);
      }
      if (abort.signal.aborted) throw new TrainingInterrupted(-1);
      if (!method.publishes) {
        // a reward model is no chat model: its last epoch's checkpoint is the result
        await exclusively(engine, () => {
          native.setTrainable(null);
          native.removeAdapter(adapter);
        });
        added = false;
        const last = store.jobs.checkpoints(id, { limit: 1 })?.items[0];
        this.#finish(id, { status: "succeeded", trainedTokens: result.trainedTokens }, "info", `The job has successfully completed: its result is checkpoint ${last?.fineTunedModelCheckpoint ?? "(none)"}`, {
          write: () => store.jobs.update(id, { method: { type: method.type, hyperparameters: result.hyperparameters } }),
        });
        return;
      }
      // the trained adapter, written next to its final place and renamed into it
      const versionDir = join(dataDir, "versions", id);
      const tmp = `${versionDir}.tmp`;
      rmSync(tmp, { recursive: true, force: true });
      await exclusively(engine, async () => {
        native.setTrainable(null); // drops gradients and AdamW moments
        await savePeftAdapter(native, model.config, adapter, tmp, { baseModel: queued.model });
      });
      rmSync(versionDir, { recursive: true, force: true });
      renameSync(tmp, versionDir);
      if (abort.signal.aborted) throw new TrainingInterrupted(-1);
      // on a device, serving and training share the resident weights: only the adapter moves
      if (native.device().kind !== "cpu") this.#say(id, `Weights moved between host and device during the job: ${native.weightBytesMoved() - movedAtStart} bytes`);
      const created = nowSeconds();
      // the version and the job's success commit together, so a restart never finds one without the other
      this.#finish(id, { status: "succeeded", fineTunedModel: adapter, trainedTokens: result.trainedTokens }, "info", `The job has successfully completed: ${adapter} is served`, {
        write: () => {
          store.versions.insert({ id: adapter, base: queued.model, jobId: id, dir: versionDir, createdAt: created });
          store.jobs.update(id, { method: { type: method.type, hyperparameters: result.hyperparameters } });
        },
        committed: () => {
          publishVersion(slot, model.dir, { id: adapter, dir: versionDir, created });
          added = false; // served from now on
        },
      });
    } catch (e) {
      if (added) {
        await exclusively(engine, () => {
          native.setTrainable(null);
          native.removeAdapter(adapter);
        }).catch(() => undefined); // the engine closed: the model goes with it
      }
      const now = store.jobs.get(id);
      if (now && !isFinal(now.status)) {
        const err = this.#closing ? SHUT_DOWN : failureOf(e);
        this.#finish(id, { status: "failed", error: err }, "error", err.message);
      }
      await this.#discard(id);
    }
  }

  #reporter(id: string, adapter: string, base: string, method: string): MethodReporter {
    const { store, engine, model, onStep } = this.#o;
    return {
      message: (text) => this.#say(id, text),
      step: (m) => {
        this.#event(id, "info", `Step ${m.step}/${m.total_steps}: training loss=${m.train_loss.toFixed(4)}`, "metrics", m);
        onStep?.(id, method, m);
      },
      epoch: async (e) => {
        const dir = join(this.#jobDir(id), `checkpoint-${e.step}`);
        await exclusively(engine, () => savePeftAdapter(model.native, model.config, adapter, dir, { baseModel: base }));
        store.jobs.addCheckpoint({
          jobId: id,
          createdAt: nowSeconds(),
          stepNumber: e.step,
          metrics: { step: e.step, train_loss: e.train_loss, valid_loss: e.valid_loss, full_valid_loss: e.valid_loss },
          fineTunedModelCheckpoint: `${adapter}:ckpt-step-${e.step}`,
          dir,
        });
        this.#say(id, `Epoch ${e.epoch} done: checkpoint at step ${e.step}${e.valid_loss === null ? "" : `, validation loss=${e.valid_loss.toFixed(4)}`}`);
      },
    };
  }
}
