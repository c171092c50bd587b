// A fine-tuning job's events over GET /v1/fine_tuning/jobs/{id}/events/stream as an async
// iterable: the events so far, then live ones and the job object at each status change,
// until the job is final (the server then closes the socket).
import WebSocket from "ws";
import type { JobBody, JobEventBody } from "../server/fine-tuning/shapes.js";

/** What the stream carries: an event (`fine_tuning.job.event`) or the job (`fine_tuning.job`). */
export type JobStreamMessage = JobEventBody | JobBody;

/** The stream could not start or ended abnormally; `status` is the HTTP status of a refused upgrade. */
export class JobStreamError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = "JobStreamError";
  }
}

/** http(s)://host/v1 → ws(s)://host/v1/fine_tuning/jobs/{id}/events/stream */
export function jobStreamUrl(baseURL: string, jobId: string): string {
  return `${baseURL.replace(/^http/, "ws").replace(/\/+$/, "")}/fine_tuning/jobs/${encodeURIComponent(jobId)}/events/stream`;
}

function errorMessage(body: string): string {
  try {
    return (JSON.parse(body) as { error?: { message?: string } }).error?.message ?? body;
  } catch {
    return body;
  }
}

export async function* streamJob(url: string, apiKey: string | null, signal?: AbortSignal): AsyncGenerator<JobStreamMessage, void, undefined> {
  const ws = new WebSocket(url, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  const queue: JobStreamMessage[] = [];
  let error: Error | null = null;
  let done = false;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    wake?.();
    wake = null;
  };
  const fail = (e: Error): void => {
    error ??= e;
    done = true;
    notify();
  };
  ws.on("message", (d) => {
    const m = JSON.parse(String(d)) as JobStreamMessage | { error: { message: string } };
    if ("error" in m && !("object" in m)) return fail(new JobStreamError(m.error.message, 404));
    queue.push(m as JobStreamMessage);
    notify();
  });
  ws.on("unexpected-response", (_req, res) => {
    let body = "";
    res.setEncoding("utf8").on("data", (c: string) => (body += c));
    res.on("end", () => fail(new JobStreamError(errorMessage(body), res.statusCode ?? null)));
  });
  ws.on("error", (e) => fail(e));
  ws.on("close", (code, reason) => {
    if (code !== 1000 && code !== 1005) fail(new JobStreamError(`the job stream closed with ${code} ${String(reason)}`));
    done = true;
    notify();
  });
  const abort = (): void => fail(new JobStreamError("aborted"));
  signal?.addEventListener("abort", abort, { once: true });
  try {
    for (;;) {
      if (queue.length > 0) {
        yield queue.shift()!;
        continue;
      }
      if (error) throw error;
      if (done) return;
      await new Promise<void>((r) => (wake = r));
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    ws.terminate();
  }
}
