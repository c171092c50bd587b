// Shared by the test/api-*.test.ts files: the real test model, an app serving it, and
// small helpers for SSE bodies. (No tests here.)
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import OpenAI from "openai";
import { Engine, type EngineOptions } from "../engine/engine.js";
import { loadModel, type LoadedModel, type LoadModelOptions } from "../engine/model.js";
import { buildApp, type AppOptions } from "../server/http/app.js";
import { ServerMetrics } from "../server/http/metrics.js";

import { repoRoot, storiesDir as testModelDir } from "./test-model.js";
export { repoRoot, testModelDir };

/** README facts of stories260K */
export const README = {
  /** greedy from BOS alone, 29 generated tokens */
  fromBos: "Once upon a time, there was a little girl named Lily. She loved to play outside in the par",
  /** greedy continuation of "Once upon a time" */
  continuation:
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.",
};

export interface TestServing {
  app: FastifyInstance;
  engine: Engine;
  model: LoadedModel;
  close(): Promise<void>;
}

export async function serveModel(
  o: { dir?: string; load?: LoadModelOptions; engine?: Partial<EngineOptions>; app?: Omit<AppOptions, "engine" | "model"> } = {},
): Promise<TestServing> {
  const model = await loadModel(o.dir ?? testModelDir, { threads: 2, ...o.load });
  const metrics = new ServerMetrics();
  const engine = new Engine(model, { maxBatch: 8, maxQueue: 64, maxBatchTokens: 512, observer: metrics.observer, ...o.engine });
  const app = buildApp({ ...o.app, engine, model, metrics });
  await app.ready();
  return {
    app,
    engine,
    model,
    async close() {
      await app.close();
      await engine.close();
      model.dispose();
    },
  };
}

/** Polls until `cond` holds (the test's own timeout bounds the wait). */
export async function waitFor(cond: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  const until = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`gave up waiting for: ${what}`);
    await sleep(2);
  }
}

/**
 * Holds the model once a request runs, as a training job's task would between two steps,
 * so a test can look at (or cancel) a request the fast 260K model would otherwise finish
 * first. The returned function lets the engine go on and waits for the task to end.
 */
export function holdOnceRunning(engine: Engine): () => Promise<void> {
  let release!: () => void;
  let released = false;
  const gate = new Promise<void>((res) => (release = res));
  let held: Promise<void> = Promise.resolve();
  const hold = (): void => {
    held = engine
      .runExclusive(async () => {
        if (released || engine.stats().running > 0) return gate;
        await sleep(1); // let the request in; ask again after the next step
        hold();
      })
      .catch(() => undefined); // the engine was closed (a test that failed first)
  };
  hold();
  return async () => {
    released = true;
    release();
    await held;
  };
}

/** `data:` payloads of an SSE body, in order ("[DONE]" kept as a string). */
export function sseData(body: string): unknown[] {
  const out: unknown[] = [];
  for (const frame of body.split("\n\n")) {
    const line = frame.trim();
    if (!line) continue;
    if (!line.startsWith("data: ")) throw new Error(`not an SSE data frame: ${JSON.stringify(line)}`);
    const data = line.slice(6);
    out.push(data === "[DONE]" ? data : JSON.parse(data));
  }
  return out;
}

/** The official client's error for `p`, which must fail with one (anything else is rethrown). */
export async function apiFailure(p: PromiseLike<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  assert.fail("the request succeeded");
}
