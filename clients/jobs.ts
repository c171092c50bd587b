// Fine-tuning jobs through the official client's `fineTuning.jobs` where OpenAI's shapes
// match, plus what it lacks: hybridchat's other methods (reward_model, ppo) at creation,
// and the live event stream over the WebSocket.
import type OpenAI from "openai";
import type { CreateJobRequest } from "../server/http/schemas/fine-tuning.js";
import type { JobBody } from "../server/fine-tuning/shapes.js";
import { jobStreamUrl, streamJob, type JobStreamMessage } from "./job-stream.js";

export type { CreateJobRequest, JobBody };

export class JobsResource {
  constructor(private readonly client: OpenAI) {}

  /** any method the server runs: supervised, dpo, reward_model or ppo */
  create(body: CreateJobRequest): Promise<JobBody> {
    return this.client.post<JobBody>("/fine_tuning/jobs", { body });
  }

  list(q: OpenAI.FineTuning.JobListParams = {}) {
    return this.client.fineTuning.jobs.list(q);
  }

  retrieve(id: string) {
    return this.client.fineTuning.jobs.retrieve(id);
  }

  cancel(id: string) {
    return this.client.fineTuning.jobs.cancel(id);
  }

  /** one page of stored events, newest first (OpenAI's order) */
  events(id: string, q: OpenAI.FineTuning.JobListEventsParams = {}) {
    return this.client.fineTuning.jobs.listEvents(id, q);
  }

  checkpoints(id: string) {
    return this.client.fineTuning.jobs.checkpoints.list(id);
  }

  /**
   * Every event so far (oldest first), then live ones and the job at each status change,
   * ending when the job is final:
   *   for await (const m of hc.jobs.stream(id)) if (m.object === "fine_tuning.job.event") console.log(m.message);
   */
  stream(id: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<JobStreamMessage, void, undefined> {
    return streamJob(jobStreamUrl(this.client.baseURL, id), this.client.apiKey, opts.signal);
  }
}
