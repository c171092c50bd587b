// GET /metrics in Prometheus' text format. Names follow vLLM's meanings (vllm:<name> →
// hybridchat_<name>, with an underscore: Prometheus keeps colons for recording rules), and
// every request metric is labelled by model_name, the served id (base or adapter version).
// The training side: the latest step of each fine-tuning job (gauges labelled by job_id and
// method) and the seconds the model spent in serving forward steps vs training calls.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineObserver, EngineStats, FinishedRequest } from "../../engine/engine.js";
import type { DeviceInfo, StepCounts } from "../../native/index.js";

// vLLM's buckets, extended below 10 ms: a small model here answers well under that
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const ITL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];

/** the step metrics a job reports that become gauges: key in the metrics event, metric name, help */
type JobGauge = "step" | "train_loss" | "reward" | "kl" | "tokens_per_s";
const JOB_GAUGES: readonly (readonly [JobGauge, string, string])[] = [
  ["step", "step", "The job's latest optimizer step."],
  ["train_loss", "loss", "Training loss at the job's latest step."],
  ["reward", "reward", "Mean reward at the job's latest step (dpo: implicit reward margin; ppo: reward-model score; reward_model: score margin)."],
  ["kl", "kl", "KL to the reference at the job's latest step, nats per token (dpo: mean log-ratio on the data; ppo: on its samples)."],
  ["tokens_per_s", "tokens_per_second", "Tokens through the model per second of the job's latest step."],
];

/** What the gauges read when scraped: the running engine, once a model is served. */
export interface MetricsSource {
  stats(): EngineStats;
}

export class ServerMetrics {
  readonly registry = new Registry();
  #baseName = "";
  #source: MetricsSource | null = null;
  #stepCounts: (() => StepCounts) | null = null;

  readonly #promptTokens: Counter<"model_name">;
  readonly #generationTokens: Counter<"model_name">;
  readonly #success: Counter<"model_name" | "finished_reason">;
  readonly #aborted: Counter<"model_name" | "reason">;
  readonly #ttft: Histogram<"model_name">;
  readonly #itl: Histogram<"model_name">;
  readonly #e2e: Histogram<"model_name">;
  readonly #queue: Histogram<"model_name">;
  readonly #busy: Counter<"phase">;
  readonly #job: ReadonlyMap<JobGauge, Gauge<"job_id" | "method">>;
  readonly #device: Gauge<"device" | "name">;
  readonly #devices: Gauge;

  constructor() {
    const registers = [this.registry];
    const source = (): MetricsSource | null => this.#source;
    const gauge = (name: string, help: string, read: (s: EngineStats) => number): Gauge =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = source();
          if (s) this.set(read(s.stats()));
        },
      });
    this.#device = new Gauge({
      name: "hybridchat_device_info",
      help: "1, labelled by where the serving forward runs (device: cpu or cuda) and the device's name.",
      labelNames: ["device", "name"],
      registers,
    });
    this.#devices = new Gauge({
      name: "hybridchat_devices",
      help: "Devices the serving forward runs on: 0 on the CPU; on cuda 1, or the tensor-parallel ranks (one device each).",
      registers,
    });
    gauge("hybridchat_num_requests_running", "Requests in the running batch (vLLM: num_requests_running).", (s) => s.running);
    gauge("hybridchat_num_requests_waiting", "Requests waiting for a batch slot (vLLM: num_requests_waiting).", (s) => s.waiting);
    gauge("hybridchat_kv_cache_usage_perc", "Fraction of KV-cache blocks in use, 0..1 (vLLM: kv_cache_usage_perc).", (s) => s.kvUsage);
    new Counter({
      name: "hybridchat_num_preemptions_total",
      help: "Running requests preempted (by recompute) when the KV cache ran short (vLLM: num_preemptions_total).",
      registers,
      collect() {
        const s = source();
        if (!s) return;
        this.reset();
        this.inc(s.stats().preemptions);
      },
    });
    this.#promptTokens = new Counter({ name: "hybridchat_prompt_tokens_total", help: "Prompt tokens of finished requests.", labelNames: ["model_name"], registers });
    this.#generationTokens = new Counter({ name: "hybridchat_generation_tokens_total", help: "Generated tokens of finished requests.", labelNames: ["model_name"], registers });
    this.#success = new Counter({ name: "hybridchat_request_success_total", help: "Finished requests by finish reason.", labelNames: ["model_name", "finished_reason"], registers });
    this.#aborted = new Counter({ name: "hybridchat_request_aborted_total", help: "Requests that ended unfinished: cancelled (client gone, shutdown) or failed.", labelNames: ["model_name", "reason"], registers });
    this.#ttft = new Histogram({ name: "hybridchat_time_to_first_token_seconds", help: "From submission to the first generated token.", labelNames: ["model_name"], buckets: LATENCY_BUCKETS, registers });
    this.#itl = new Histogram({ name: "hybridchat_inter_token_latency_seconds", help: "Between two consecutive tokens of one request.", labelNames: ["model_name"], buckets: ITL_BUCKETS, registers });
    this.#e2e = new Histogram({ name: "hybridchat_e2e_request_latency_seconds", help: "From submission to the last token.", labelNames: ["model_name"], buckets: LATENCY_BUCKETS, registers });
    this.#queue = new Histogram({ name: "hybridchat_request_queue_time_seconds", help: "From submission to first scheduled.", labelNames: ["model_name"], buckets: LATENCY_BUCKETS, registers });
    this.#busy = new Counter({
      name: "hybridchat_model_busy_seconds_total",
      help: "Seconds the model was busy, by phase: serving (forward steps of requests) or training (a job's calls between them); training / (serving + training) is the share of time spent training.",
      labelNames: ["phase"],
      registers,
    });
    for (const phase of ["serving", "training"]) this.#busy.inc({ phase }, 0);
    // read from the model when scraped: a CUDA graph replay is one launch for a whole decode step
    const steps = (): StepCounts | null => this.#stepCounts?.() ?? null;
    new Counter({
      name: "hybridchat_forward_steps_total",
      help: "Serving forward steps by how they ran: mode=graph, a decode step replayed as one CUDA graph launch; mode=eager, its kernels launched one by one (every step on the CPU).",
      labelNames: ["mode"],
      registers,
      collect() {
        const s = steps();
        if (!s) return;
        this.reset();
        this.inc({ mode: "graph" }, s.graphReplays);
        this.inc({ mode: "eager" }, s.eagerSteps);
      },
    });
    new Counter({
      name: "hybridchat_cuda_graph_captures_total",
      help: "CUDA graphs captured for decode steps (again after the weights, an adapter or a buffer they hold changed).",
      registers,
      collect() {
        const s = steps();
        if (!s) return;
        this.reset();
        this.inc(s.graphCaptures);
      },
    });
    this.#job = new Map(
      JOB_GAUGES.map(([key, name, help]) => [key, new Gauge({ name: `hybridchat_fine_tuning_job_${name}`, help, labelNames: ["job_id", "method"], registers })] as const),
    );
  }

  /** A job's optimizer step (its metrics event's data): the gauges of that job follow it. */
  jobStep(jobId: string, method: string, m: Readonly<Record<string, number>>): void {
    for (const [key, gauge] of this.#job) {
      const v = m[key];
      if (typeof v === "number" && Number.isFinite(v)) gauge.set({ job_id: jobId, method }, v);
    }
  }

  /** The job ended: its series go (its step metrics stay in its events), so /metrics does not grow with every job ever run. */
  jobEnded(jobId: string, method: string): void {
    for (const gauge of this.#job.values()) gauge.remove({ job_id: jobId, method });
  }

  /** The model is served: label the base's requests with its id, read gauges from the engine. */
  attach(baseName: string, source: MetricsSource, device?: DeviceInfo, stepCounts?: () => StepCounts): void {
    this.#baseName = baseName;
    this.#source = source;
    this.#stepCounts = stepCounts ?? null;
    if (device) this.#device.set({ device: device.kind, name: device.name }, 1);
    if (device) this.#devices.set(device.devices);
  }

  /** The engine's hooks (engine/engine.ts EngineOptions.observer). */
  readonly observer: EngineObserver = {
    interTokenMs: (adapter, ms) => this.#itl.observe({ model_name: this.#name(adapter) }, ms / 1000),
    finished: (r: FinishedRequest) => {
      const model_name = this.#name(r.adapter);
      this.#promptTokens.inc({ model_name }, r.promptTokens);
      this.#generationTokens.inc({ model_name }, r.completionTokens);
      this.#success.inc({ model_name, finished_reason: r.finishReason });
      this.#ttft.observe({ model_name }, r.firstTokenMs / 1000);
      this.#e2e.observe({ model_name }, r.totalMs / 1000);
      this.#queue.observe({ model_name }, r.queuedMs / 1000);
    },
    aborted: (adapter, reason) => this.#aborted.inc({ model_name: this.#name(adapter), reason }),
    busy: (kind, ms) => this.#busy.inc({ phase: kind === "forward" ? "serving" : "training" }, ms / 1000),
  };

  // served adapters are named by their model id (server/serving/served-model.ts)
  #name(adapter: string | null): string {
    return adapter ?? this.#baseName;
  }
}
