// The files and jobs side of the server: file contents from the start (uploads need no
// model), the job runner once the model is served. Routes reach it as app.fineTuning.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadedModel } from "../../engine/model.js";
import { errors } from "../http/errors.js";
import type { ServingSlot } from "../serving/serving.js";
import { DEFAULT_TRAINING_SOURCES, type FeedbackSource } from "../store/feedback.js";
import type { Store } from "../store/store.js";
import { JobRunner, type JobRunnerOptions } from "./job-runner.js";
import { METHODS } from "./methods/index.js";
import type { JobEngine } from "./methods/method.js";
import { FileContents } from "./training-files.js";
import { TrainingFileCheck } from "./training-file-check.js";
import { DEFAULT_FILE_LIMITS, type FileLimits } from "./uploads.js";
import { RlhfPolicy, type RlhfPolicyConfig } from "../rlhf/policy.js";
import { unpublishVersion } from "./versions.js";

export class FineTuning {
  readonly files: FileContents;
  /** checks training files on a worker thread (uploads, a job's copy) */
  readonly check = new TrainingFileCheck();
  readonly dataDir: string;
  #runner: JobRunner | null = null;
  #served: { slot: ServingSlot; engine: JobEngine; model: LoadedModel } | null = null;
  #policy: RlhfPolicy | null = null;
  /** a temporary data dir (no --data-dir), removed on close */
  readonly #ownDir: boolean;

  constructor(
    readonly store: Store,
    dataDir: string | undefined,
    /** continuous RLHF (null: off) */
    readonly rlhf: RlhfPolicyConfig | null = null,
    /** the feedback sources that train, by continuous RLHF and by jobs on training_file "feedback" */
    readonly trainingSources: readonly FeedbackSource[] = DEFAULT_TRAINING_SOURCES,
    /** what an upload may be (--max-file-bytes, --max-file-lines, --max-line-bytes) */
    readonly limits: FileLimits = DEFAULT_FILE_LIMITS,
  ) {
    this.#ownDir = dataDir === undefined;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "hybridchat-data-"));
    this.files = new FileContents(join(this.dataDir, "files"));
  }

  /** Starts the job runner on the served model: interrupted jobs are failed, waiting ones resume. */
  start(slot: ServingSlot, engine: JobEngine, model: LoadedModel, hooks: Pick<JobRunnerOptions, "onStep" | "onEnd"> & { log?: (message: string) => void } = {}): JobRunner {
    if (this.#runner) throw new Error("the job runner is already started");
    let policy: RlhfPolicy | null = null;
    const runner = new JobRunner({ store: this.store, slot, engine, model, files: this.files, check: this.check, dataDir: this.dataDir, methods: METHODS, trainingSources: this.trainingSources, ...hooks, gateFor: (job) => policy?.gateFor(job) ?? null });
    if (this.rlhf) policy = new RlhfPolicy(this.rlhf, { store: this.store, files: this.files, runner, slot, model, log: hooks.log ?? (() => undefined), sources: this.trainingSources, deleteVersion: (id) => this.deleteVersion(id) });
    this.#runner = runner;
    this.#policy = policy;
    this.#served = { slot, engine, model };
    runner.recover();
    policy?.start();
    return runner;
  }

  /** the continuous-RLHF policy, when configured and the model is served */
  get policy(): RlhfPolicy | null {
    return this.#policy;
  }

  get runner(): JobRunner | null {
    return this.#runner;
  }

  /** the runner, or 503 while the model loads */
  requireRunner(): JobRunner {
    if (!this.#runner) throw errors.fineTuningUnavailable();
    return this.#runner;
  }

  /**
   * Deletes published version `id` (not promoted: the caller checks): no new request gets
   * it at once; the adapter leaves the model once no request in flight uses it; then its
   * row and its directory go.
   */
  async deleteVersion(id: string): Promise<void> {
    const served = this.#served;
    const v = this.store.versions.get(id);
    if (!served || !v) throw new Error(`deleteVersion: ${id} is not a served version`);
    unpublishVersion(served.slot, id);
    while (served.engine.usesAdapter(id)) await new Promise((r) => setTimeout(r, 20));
    await served.engine.runExclusive(async () => served.model.native.removeAdapter(id));
    this.store.versions.delete(id);
    rmSync(v.dir, { recursive: true, force: true });
  }

  /** Stops the running job (failed: shut down); call before the engine closes. */
  async close(): Promise<void> {
    this.#policy?.close();
    await this.#runner?.close();
    await this.check.close();
    if (this.#ownDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
