// One worker thread answering calls in order: each call posts a message with an id, the
// worker posts back `{ id, ok }` or `{ id, error }`. The worker starts on first use, is
// referenced only while a call is pending (an idle one never keeps the process alive),
// and is restarted by the next call if it dies.
import { Worker, type ResourceLimits, type TransferListItem } from "node:worker_threads";

export type WorkerReply<R> = { id: number; ok: R } | { id: number; error: string };

export class WorkerCalls<Q, R> {
  #worker: Worker | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (r: R) => void; reject: (e: Error) => void }>();
  #closed = false;

  constructor(
    private readonly script: URL,
    private readonly workerData: unknown,
    /** the worker's heap limits (node's ResourceLimits), when it should stay small */
    private readonly resourceLimits?: ResourceLimits,
  ) {}

  call(request: Q, transfer: readonly TransferListItem[] = []): Promise<R> {
    if (this.#closed) return Promise.reject(new Error("worker closed"));
    const worker = this.#start();
    const id = this.#nextId++;
    return new Promise<R>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) worker.ref();
      worker.postMessage({ id, request }, [...transfer]);
    });
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(this.script, { workerData: this.workerData, resourceLimits: this.resourceLimits });
    w.unref();
    w.on("message", (m: WorkerReply<R>) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) w.unref();
      if ("ok" in m) p.resolve(m.ok);
      else p.reject(new Error(m.error));
    });
    const fail = (e: Error) => {
      if (this.#worker === w) this.#worker = null;
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`worker exited (code ${code})`)));
    this.#worker = w;
    return w;
  }

  /** Stops the worker; pending calls reject. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const w = this.#worker;
    this.#worker = null;
    if (w) await w.terminate();
  }
}

/** The worker side: answers each call with `handle` (a throw becomes the caller's rejection). */
export function serveWorkerCalls<Q, R>(port: import("node:worker_threads").MessagePort, handle: (q: Q) => { result: R; transfer?: TransferListItem[] }): void {
  port.on("message", (m: { id: number; request: Q }) => {
    try {
      const { result, transfer } = handle(m.request);
      port.postMessage({ id: m.id, ok: result } satisfies WorkerReply<R>, transfer ?? []);
    } catch (e) {
      port.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) } satisfies WorkerReply<R>);
    }
  });
}
