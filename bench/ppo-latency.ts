// User chat latency while a PPO job generates its rollouts on the serving engine: the
// job's real rollout code (generateRollouts, batches of 16 answers of 64 tokens, back to
// back) against users who each send a chat of 16 tokens and wait for it, for durationS.
// Three runs: no job; the job's rollouts as background requests (admitted after users,
// preempted first: what serving does); the same rollouts at serving priority (before).
import { loadModel } from "../engine/model.js";
import { Engine } from "../engine/engine.js";
import { generateRollouts } from "../engine/train/ppo/experience.js";
import type { RolloutEngine } from "../engine/train/ppo/ppo-model.js";
import type { SamplingParams } from "../engine/types.js";
import type { Report } from "./report.js";
import { quantile } from "./sitting.js";
import { samplingParams } from "../test/generation-helpers.js";

export interface PpoLatencyCase {
  modelDir: string;
  users: number;
  durationS: number;
  threads: number;
}

const base: SamplingParams = samplingParams({ temperature: 1, maxTokens: 16, seed: 1, ignoreEos: true });

export async function runPpoLatency(report: Report, c: PpoLatencyCase): Promise<void> {
  const model = await loadModel(c.modelDir, { threads: c.threads });
  try {
    const prompt = model.tokenizer.encode("Once upon a time, there was a little", true);
    for (const mode of ["no job", "ppo rollouts, background", "ppo rollouts, same priority"] as const) {
      const engine = new Engine(model, { maxBatch: 8, maxQueue: 256, maxBatchTokens: 512 });
      const until = performance.now() + c.durationS * 1000;
      // "same priority": what every request was before rollouts became background
      const rollouts: RolloutEngine = mode === "ppo rollouts, same priority" ? { generate: (r) => engine.generate({ ...r, background: false }) } : engine;
      let jobTokens = 0;
      const job = (async () => {
        if (mode === "no job") return;
        for (let i = 0; performance.now() < until; i++) {
          const rs = await generateRollouts(rollouts, Array.from({ length: 16 }, () => prompt), (k) => ({ ...base, maxTokens: 64, seed: 1000 * i + k }), null);
          jobTokens += rs.reduce((a, r) => a + r.tokens.length - r.promptLength, 0);
        }
      })();
      const latencies: number[] = [];
      await Promise.all(
        Array.from({ length: c.users }, async (_, u) => {
          for (let i = 0; performance.now() < until; i++) {
            const t0 = performance.now();
            for await (const ev of engine.generate({ promptTokens: prompt, params: { ...base, seed: 100 * u + i } })) void ev;
            latencies.push(performance.now() - t0);
          }
        }),
      );
      await job;
      await engine.close();
      const config = { model: model.id, mode, users: c.users, duration_s: c.durationS, max_tokens: 16, job_tokens_per_s: Math.round(jobTokens / c.durationS), chats: latencies.length };
      report.add({ name: `user chat latency p50 (${mode})`, value: quantile(latencies, 0.5), unit: "ms", config });
      report.add({ name: `user chat latency p99 (${mode})`, value: quantile(latencies, 0.99), unit: "ms", config });
    }
  } finally {
    model.dispose();
  }
}
