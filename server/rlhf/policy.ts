// Continuous RLHF: a policy in the server's config that, after N new preferences and/or
// every T minutes (when there is anything new), trains on everything collected as a
// visible fine-tuning job, gates the candidate on held-out preferences against what the
// base id serves now (server/rlhf/gate.ts), publishes it only when it is not worse, and
// promotes it when configured.
//
// Each run: every preference so far, split deterministically by a hash of its feedback id
// (a pair stays on the side it first fell on as the data grows), written as two uploaded
// files (train, held-out), then a job with suffix "rlhf" whose validation file is the
// held-out one. The runner gates jobs with that suffix (JobRunnerOptions.gateFor), so a
// job queued before a restart is still gated after it. How far a run read is the training
// file's name (rlhf-<seq>.train.jsonl), so a restart neither retrains nor skips feedback.
// One run at a time; a run that fails is a failed job and a logged line, never an outage.
//
// With method ppo a run is two visible jobs on the same two files: a reward_model job
// (suffix "rlhf-rm", its held-out pairwise accuracy reported on the held-out file), then,
// when it succeeded, a ppo job (suffix "rlhf", gated like a dpo one) against it. A restart
// that finds the newest run's reward_model job without its ppo job waits for it and goes on.
//
// With `keep` (--rlhf-keep N), after each run only the newest N versions the policy
// published stay; an older one is deleted (never the promoted one) with what its run left:
// its two files, its job's (and a ppo run's reward_model job's) checkpoints and data copy.
import { createHash } from "node:crypto";
import type { LoadedModel } from "../../engine/model.js";
import type { DpoLine } from "../../engine/train/data/training-format.js";
import type { JobGate, JobRunner, JobUpdate } from "../fine-tuning/job-runner.js";
import type { FileContents } from "../fine-tuning/training-files.js";
import { promoteVersion } from "../fine-tuning/versions.js";
import { readyServing } from "../http/request-context.js";
import { betterThanServed } from "./gate.js";
import type { ServingSlot } from "../serving/serving.js";
import { dpoLine } from "../store/export.js";
import { trainable, type FeedbackFilter, type FeedbackSource } from "../store/feedback.js";
import { fileId } from "../store/files.js";
import { isFinal, type JobRecord } from "../store/jobs.js";
import type { Store } from "../store/store.js";
import { nowSeconds } from "../http/openai-shapes.js";
import type { RlhfPolicyConfig } from "./config.js";

export type { RlhfPolicyConfig } from "./config.js";

export const RLHF_SUFFIX = "rlhf";
/** the reward_model job of a ppo run (not gated: it publishes nothing) */
export const RLHF_RM_SUFFIX = "rlhf-rm";
export interface RlhfPolicyDeps {
  store: Store;
  files: FileContents;
  runner: JobRunner;
  slot: ServingSlot;
  model: LoadedModel;
  log: (message: string) => void;
  /** the feedback sources runs train on (--rlhf-sources) */
  sources: readonly FeedbackSource[];
  /** deletes a published version (FineTuning.deleteVersion: unserved once no request uses it, row and directory gone) */
  deleteVersion: (id: string) => Promise<void>;
  /** the clock (tests) */
  now?: () => number;
}

const UNFINISHED: JobRecord["status"][] = ["validating_files", "queued", "running"];
const TRAIN_FILE = /^rlhf-(\d+)\.train\.jsonl$/;
const BATCH = 256;

/**
 * Which side a preference falls on: the first 32 bits of sha256 of its training line, as a
 * fraction, below `share`. Keyed by content, not by the random feedback id, so the same pair
 * given twice can never sit on both sides (the gate would score a candidate on what it trained
 * on), and the same feedback splits the same way in every run and on every server.
 */
export function isHeldOut(line: DpoLine, share: number): boolean {
  return createHash("sha256").update(JSON.stringify(line)).digest().readUInt32BE(0) / 2 ** 32 < share;
}

export class RlhfPolicy {
  readonly #c: RlhfPolicyConfig;
  readonly #d: RlhfPolicyDeps;
  /** feedback insertion position the last run read up to */
  #seq = 0;
  #lastRunMs: number;
  /** the run in progress (its job's id until the job is final) */
  #running: Promise<void> | null = null;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(config: RlhfPolicyConfig, deps: RlhfPolicyDeps) {
    this.#c = config;
    this.#d = deps;
    this.#lastRunMs = this.#now();
  }

  /** the job gate for the runner: jobs this policy created are judged on their held-out file */
  readonly gateFor = (job: JobRecord): JobGate | null => {
    if (job.suffix !== RLHF_SUFFIX) return null;
    return async ({ adapter, training, validationText }) => {
      if (validationText === null) return { pass: false, message: "No held-out preferences to evaluate the candidate on; not published." };
      const s = readyServing(this.#d.slot);
      const served = s.variants.get(s.servedModelName)!;
      return betterThanServed(this.#d.model, training, adapter, { id: s.promoted ?? s.servedModelName, adapter: served.adapter }, validationText);
    };
  };

  /** Reads how far the last run got, waits for a run a restart left queued, and starts checking. */
  start(): void {
    const last = this.#lastJob();
    if (last) {
      const f = this.#d.store.files.get(last.trainingFile);
      const m = f && TRAIN_FILE.exec(f.filename);
      if (m) this.#seq = Number(m[1]);
      this.#lastRunMs = last.createdAt * 1000;
      if (last.suffix === RLHF_RM_SUFFIX && (!isFinal(last.status) || last.status === "succeeded")) this.#running = this.#afterRewardModel(last.id).finally(() => (this.#running = null));
      else if (!isFinal(last.status)) this.#running = this.#follow(last.id).finally(() => (this.#running = null));
    }
    this.#timer = setInterval(() => void this.check(), this.#c.pollMs ?? 1000);
    this.#timer.unref();
  }

  /** Starts a run if one is due and none is in progress; resolves with its job, or null. */
  async check(): Promise<JobRecord | null> {
    if (this.#closed || this.#running) return null;
    const { items } = this.#d.store.feedback.scan(this.#preferences(), this.#seq, Math.max(this.#c.after ?? 1, 1));
    const byCount = this.#c.after !== null && items.length >= this.#c.after;
    const byTime = this.#c.everyMinutes !== null && items.length > 0 && this.#now() - this.#lastRunMs >= this.#c.everyMinutes * 60_000;
    if (!byCount && !byTime) return null;
    try {
      return this.#fire();
    } catch (e) {
      this.#d.log(`continuous RLHF: the run could not start: ${(e as Error).message}`);
      return null;
    }
  }

  /** Settles when no run is in progress. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** the preferences a run may train on: --rlhf-sources, approved */
  #preferences(): FeedbackFilter {
    return { type: "preference", ...trainable(this.#d.sources) };
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  #lastJob(): JobRecord | null {
    let after: string | undefined;
    for (;;) {
      const page = this.#d.store.jobs.list({ after, limit: 100 });
      if (!page || page.items.length === 0) return null;
      const hit = page.items.find((j) => j.suffix === RLHF_SUFFIX || j.suffix === RLHF_RM_SUFFIX);
      if (hit) return hit;
      if (!page.hasMore) return null;
      after = page.items.at(-1)!.id;
    }
  }

  #fire(): JobRecord | null {
    const { store } = this.#d;
    const share = this.#c.heldOut ?? 0.2;
    const train: DpoLine[] = [];
    const held: DpoLine[] = [];
    let seq = 0;
    for (;;) {
      const { items, next } = store.feedback.scan(this.#preferences(), seq, BATCH);
      for (const f of items) {
        const line = dpoLine(f);
        if (line) (isHeldOut(line, share) ? held : train).push(line);
      }
      seq = next;
      if (items.length < BATCH) break;
    }
    if (train.length === 0 || held.length === 0) {
      this.#d.log(`continuous RLHF: waiting for more preferences (${train.length} to train on, ${held.length} held out; both sides need one)`);
      this.#seq = seq;
      this.#lastRunMs = this.#now();
      return null;
    }
    const trainFile = this.#file(`rlhf-${seq}.train.jsonl`, train);
    const heldFile = this.#file(`rlhf-${seq}.heldout.jsonl`, held);
    const files = { training_file: trainFile, validation_file: heldFile };
    // seeded by how far the run read, so a run is reproducible from the feedback it trained on
    const first = this.#c.method === "ppo" ? this.#create(files, RLHF_RM_SUFFIX, "reward_model", this.#c.rewardModelHyperparameters ?? {}, seq) : this.#create(files, RLHF_SUFFIX, this.#c.method, this.#c.hyperparameters ?? {}, seq);
    this.#seq = seq;
    this.#lastRunMs = this.#now();
    this.#d.log(`continuous RLHF: job ${first.id} (${first.method.type}) on ${train.length} preferences (${held.length} held out)`);
    const run = this.#c.method === "ppo" ? this.#afterRewardModel(first.id) : this.#follow(first.id);
    this.#running = run.finally(() => (this.#running = null));
    return first;
  }

  #create(files: { training_file: string; validation_file: string }, suffix: string, type: string, hyperparameters: Record<string, number | string>, seed: number): JobRecord {
    const base = readyServing(this.#d.slot).servedModelName;
    // the server's own job, like its files: no key owns it, so only admins see it
    return this.#d.runner.create({ model: base, ...files, suffix, seed, method: { type, [type]: { hyperparameters } } }, null);
  }

  /** A ppo run's second job: once its reward_model job succeeded, PPO against it on the same files. */
  async #afterRewardModel(rmJobId: string): Promise<void> {
    const rm = await this.#final(rmJobId);
    if (!rm || this.#closed) return;
    if (rm.status !== "succeeded") {
      this.#d.log(`continuous RLHF: reward model job ${rm.id} ${rm.status}${rm.error ? `: ${rm.error.message}` : ""}; no ppo job this run`);
      return;
    }
    try {
      const job = this.#create({ training_file: rm.trainingFile, validation_file: rm.validationFile! }, RLHF_SUFFIX, "ppo", { ...(this.#c.hyperparameters ?? {}), reward_model: rm.id }, rm.seed);
      this.#d.log(`continuous RLHF: job ${job.id} (ppo) against reward model ${rm.id}`);
      await this.#follow(job.id);
    } catch (e) {
      this.#d.log(`continuous RLHF: the ppo job could not start: ${(e as Error).message}`);
    }
  }

  /** An uploaded file of DPO lines, as POST /v1/files would make it: bytes first, then the row. */
  #file(filename: string, lines: readonly DpoLine[]): string {
    const bytes = Buffer.from(lines.map((l) => `${JSON.stringify(l)}\n`).join(""));
    const id = fileId();
    this.#d.files.write(id, bytes);
    this.#d.store.files.insert({ id, filename, purpose: "fine-tune", bytes: bytes.length, createdAt: nowSeconds(), format: "dpo", examples: lines.length, owner: null });
    return id;
  }

  /** Waits for the job to finish; promotes what it published when configured. */
  async #follow(jobId: string): Promise<void> {
    const job = await this.#final(jobId);
    if (!job) return;
    try {
      if (job.status === "succeeded" && job.fineTunedModel && this.#c.promote && !this.#closed) {
        this.#d.store.versions.promote(job.model, job.fineTunedModel);
        promoteVersion(this.#d.slot, job.fineTunedModel);
        this.#d.log(`continuous RLHF: ${job.fineTunedModel} promoted: ${job.model} serves it`);
      } else if (job.status !== "succeeded") this.#d.log(`continuous RLHF: job ${job.id} ${job.status}${job.error ? `: ${job.error.message}` : ""}`);
    } catch (e) {
      this.#d.log(`continuous RLHF: promoting ${job.fineTunedModel} failed: ${(e as Error).message}`);
    }
    if (job.status === "succeeded" && !this.#closed)
      await this.prune().catch((e: unknown) => this.#d.log(`continuous RLHF: removing old versions failed: ${(e as Error).message}`));
  }

  /**
   * With `keep`: deletes the versions this policy published beyond the newest `keep` (oldest
   * first; never the one the base id serves), with their runs' files and job data. Returns
   * the ids deleted.
   */
  async prune(): Promise<string[]> {
    const keep = this.#c.keep;
    if (keep === undefined) return [];
    const { store, runner, files } = this.#d;
    const promoted = store.versions.promoted(readyServing(this.#d.slot).servedModelName);
    const mine = store.versions.all().filter((v) => store.jobs.get(v.jobId)?.suffix === RLHF_SUFFIX);
    const doomed = mine.slice(0, Math.max(0, mine.length - keep)).filter((v) => v.id !== promoted);
    for (const v of doomed) {
      await this.#d.deleteVersion(v.id);
      const job = store.jobs.get(v.jobId)!;
      const rm = job.method.type === "ppo" ? String(job.method.hyperparameters.reward_model ?? "") : "";
      for (const id of [job.id, rm]) if (store.jobs.get(id)) await runner.discardData(id);
      // the run's two files, unless a job still to finish reads them
      const busy = new Set(UNFINISHED.flatMap((st) => store.jobs.withStatus(st)).flatMap((j) => [j.trainingFile, j.validationFile]));
      for (const f of [job.trainingFile, job.validationFile]) {
        if (f === null || busy.has(f) || !store.files.get(f)) continue;
        store.files.delete(f);
        files.remove(f);
      }
      this.#d.log(`continuous RLHF: ${v.id} deleted (--rlhf-keep ${keep})`);
    }
    return doomed.map((v) => v.id);
  }

  /** The job once its status is final (null: no such job). */
  #final(jobId: string): Promise<JobRecord | null> {
    const { runner, store } = this.#d;
    return new Promise<JobRecord | null>((resolve) => {
      const listen = (u: JobUpdate): void => {
        if (u.kind === "status" && isFinal(u.job.status)) {
          runner.updates.off(jobId, listen);
          resolve(u.job);
        }
      };
      runner.updates.on(jobId, listen);
      const now = store.jobs.get(jobId);
      if (!now || isFinal(now.status)) {
        runner.updates.off(jobId, listen);
        resolve(now ?? null);
      }
    });
  }
}
