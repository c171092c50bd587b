// CUDA graphs of decode steps (native/src/exec_cuda.cc run_step, cuda/graph.cu), on the
// emulated device (native/tools/cuda-emu records launches, async copies and the stand-in
// cuBLASLt's matmuls while a stream captures, and replays them at cudaGraphLaunch): the
// stories260K greedy decode of a batch is token for token the same with graphs on, with
// graphs off and on the CPU, and the graph path is the one taken; merging an adapter, a
// written parameter and a training step each drop the graphs and the next steps capture
// again — a stale graph would still read the unmerged weights.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { NativeModel } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { freshSeed, Rng } from "./reference/check.js";
import { emulatorSkip, greedyBoth, useEmulator } from "./cuda-compare.js";
import { repoRoot, storiesDir } from "./test-model.js";

useEmulator("hc-cuda-graphs-");

describe("decode steps as CUDA graphs on an emulated device", { skip: emulatorSkip }, () => {
  let cpu: LoadedModel, on: LoadedModel, off: LoadedModel;
  let prompts: number[][] = [];
  before(async () => {
    // 4-token KV blocks: the decode crosses blocks, so the tables' width (part of a graph's shape) grows
    const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 96, kvDtype: "f32" as const };
    cpu = await loadModel(storiesDir, { ...opts, device: "cpu" });
    on = await loadModel(storiesDir, { ...opts, device: "cuda" });
    off = await loadModel(storiesDir, { ...opts, device: "cuda", cudaGraphs: false });
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    prompts = [enc("Once upon a time, there was a big red ball"), enc("The dog ran"), enc("Lily liked to play")];
  });
  after(() => [cpu, on, off].forEach((m) => m?.dispose()));

  it("greedy decode token for token equal with graphs on, off, and on the CPU; the replays are counted", async () => {
    const V = cpu.config.vocabSize;
    const before = on.native.stepCounts();
    const withGraphs = await greedyBoth(cpu.native, on.native, prompts, 12, V);
    const without = await greedyBoth(cpu.native, off.native, prompts, 12, V);
    assert.deepEqual(withGraphs.cuda, withGraphs.cpu);
    assert.deepEqual(without.cuda, without.cpu);
    assert.ok(withGraphs.worst <= 0, `graphs on: logits differ by ${withGraphs.worst}`);
    const c = on.native.stepCounts();
    // 12 decode steps of 3 rows (bucket 4) over table widths 4 and 8: each width's first step
    // eager, its second captured, the rest replayed
    assert.ok(c.graphCaptures - before.graphCaptures >= 1, JSON.stringify(c));
    assert.ok(c.graphReplays - before.graphReplays >= 6, JSON.stringify(c));
    // off: every step launched op by op
    assert.equal(off.native.stepCounts().graphReplays, 0);
    assert.equal(off.native.stepCounts().eagerSteps, 13);
  });

  it("batches of 1, 2, 5 and 9 sequences pad to their bucket and stay equal to the CPU", async () => {
    const V = cpu.config.vocabSize;
    const rng = new Rng(freshSeed());
    for (const n of [1, 2, 5, 9]) {
      const ps = Array.from({ length: n }, (_, i) => prompts[i % prompts.length].concat([rng.int(V)]));
      const r = await greedyBoth(cpu.native, on.native, ps, 5, V);
      assert.deepEqual(r.cuda, r.cpu, `batch of ${n}`);
      assert.ok(r.worst <= 0, `batch of ${n}: logits differ by ${r.worst}`);
    }
  });

  it("an adapter merged, a parameter written, a training step: the graphs are captured again", async () => {
    const V = cpu.config.vocabSize;
    const seed = freshSeed();
    const rng = new Rng(seed);
    const both = (f: (m: NativeModel) => void) => [cpu, on].forEach((m) => f(m.native));
    both((m) => m.addAdapter("g", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "up"], seed: 3 }, valueHead: false }));
    for (const p of cpu.native.parameters("g")) {
      const data = Float32Array.from({ length: p.shape.reduce((x, y) => x * y, 1) }, () => (rng.next() - 0.5) * 0.4);
      both((m) => m.writeParameter("g", p.name, data));
    }
    // base rows: the shape's graph captured and replayed
    const base = await greedyBoth(cpu.native, on.native, prompts, 6, V, [null, null, null]);
    assert.deepEqual(base.cuda, base.cpu, `seed ${seed}`);
    let c = on.native.stepCounts();
    // merged, every row on the adapter: no LoRA op runs, the same shape as the base steps —
    // only a fresh capture reads the merged weights
    both((m) => m.mergeAdapter("g"));
    const merged = await greedyBoth(cpu.native, on.native, prompts, 6, V, ["g", "g", "g"]);
    assert.deepEqual(merged.cuda, merged.cpu, `merged (seed ${seed})`);
    assert.ok(merged.worst <= 0, `merged: logits differ by ${merged.worst} (seed ${seed})`);
    assert.notDeepEqual(merged.cpu, base.cpu, "the adapter changed nothing: this would test nothing");
    assert.ok(on.native.stepCounts().graphCaptures > c.graphCaptures, "no capture after the merge");
    both((m) => m.unmergeAdapter());
    // a LoRA training step on the device (the adapter updated in place), then decode on it
    c = on.native.stepCounts();
    const text = prompts[0];
    for (const m of [cpu.native, on.native]) {
      m.setTrainable({ adapter: "g" });
      await m.trainForward({ tokens: Int32Array.from(text), counts: Int32Array.from([text.length]), targets: Int32Array.from([...text.slice(1), -1]), adapter: "g", values: false, grad: true, checkpoint: false });
      await m.trainBackward(new Float32Array(text.length).fill(-1), null);
      await m.step({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0, maxGradNorm: 0 });
      m.setTrainable(null);
    }
    const trained = await greedyBoth(cpu.native, on.native, prompts, 6, V, ["g", null, "g"]);
    assert.deepEqual(trained.cuda, trained.cpu, `after a training step (seed ${seed})`);
    assert.ok(on.native.stepCounts().graphCaptures > c.graphCaptures, "no capture after the training step");
    both((m) => m.removeAdapter("g"));
  });
});

describe("serve --cuda-graphs on the emulated device", { skip: emulatorSkip }, () => {
  /** the completion's text and /metrics' forward-step counters of a server with graphs on or off */
  async function serveOnce(cudaGraphs: boolean | undefined): Promise<{ text: string; graph: number; eager: number; captures: number }> {
    const { createServer } = await import("../server/server.js");
    const server = createServer({ model: storiesDir, threads: 2, device: "cuda", kvDtype: "f32", cudaGraphs, store: false, logger: false });
    try {
      await server.ready;
      const r = await server.app.inject({ method: "POST", url: "/v1/completions", payload: { model: "stories260K", prompt: "Once upon a time", max_tokens: 8, temperature: 0 } });
      assert.equal(r.statusCode, 200, r.body);
      const metrics = (await server.app.inject({ method: "GET", url: "/metrics" })).body;
      const read = (re: RegExp) => Number(metrics.match(re)?.[1] ?? NaN);
      return {
        text: r.json().choices[0].text,
        graph: read(/^hybridchat_forward_steps_total\{mode="graph"\} (\d+)$/m),
        eager: read(/^hybridchat_forward_steps_total\{mode="eager"\} (\d+)$/m),
        captures: read(/^hybridchat_cuda_graph_captures_total (\d+)$/m),
      };
    } finally {
      await server.close();
    }
  }

  it("/metrics counts graph replays (default on) and none with --cuda-graphs off; the same text", async () => {
    const on = await serveOnce(undefined);
    const off = await serveOnce(false);
    assert.equal(on.text, off.text);
    // 8 tokens: the prefill and the first decode step eager, one capture, the rest replayed
    assert.ok(on.graph >= 5 && on.captures >= 1 && on.eager >= 2, JSON.stringify(on));
    assert.deepEqual({ graph: off.graph, captures: off.captures }, { graph: 0, captures: 0 });
    assert.ok(off.eager >= 8, JSON.stringify(off));
  });

  it("--cuda-graphs takes on or off, on --device cuda only", () => {
    const cli = join(repoRoot, "dist", "cli", "main.js");
    const serve = (...args: string[]) => spawnSync(process.execPath, [cli, "serve", "--model", storiesDir, "--no-store", "--port", "0", ...args], { encoding: "utf8", timeout: 60_000 });
    assert.match(serve("--device", "cuda", "--cuda-graphs", "maybe").stderr, /--cuda-graphs must be on or off, got "maybe"/);
    assert.match(serve("--device", "cpu", "--cuda-graphs", "on").stderr, /--cuda-graphs is a --device cuda option/);
  });
});
