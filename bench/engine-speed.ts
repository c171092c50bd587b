// llama-bench's tests on our engine: pp (one prompt, logits of the last token only) and tg
// (decode one token at a time with a KV cache), at batch 1 and batch 8. A decode step is timed
// as the serving engine runs it (engine/engine.ts): the forward writes a reused logits buffer
// and picks the greedy token on its own threads, and JS only passes the ids back in; so the
// per-token overhead of the engine's path counts, and nothing the server does not do.
import { loadModel, type LoadedModel } from "../engine/model.js";
import { SAMPLE_FIELDS, type KvDtype, type MatmulPrecision } from "../native/index.js";
import type { MachineLimits } from "./machine.js";
import type { Report } from "./report.js";

export interface SpeedCase {
  label: string;
  dir: string;
  prefill: number[]; // prompt lengths
  decode: { tokens: number; batch: number }[];
  reps: number;
  /** thread ranks each layer is split over; default 1 */
  tensorParallel?: number;
  /** how activations meet bf16 weights (docs/serving.md); default auto (medium for bf16 weights) */
  matmulPrecision?: MatmulPrecision | "auto";
  /** the KV cache's element type (`--kv-dtype`); default auto */
  kvDtype?: KvDtype | "auto";
  /** bytes a weight of the layers' linears (a quantized checkpoint: 34/32 for q8_0, 18/32 for q4_0); default from torch_dtype */
  bytesPerWeight?: number;
}

/** Bytes of weights read per decode step and FLOPs per token, from the model's own config. */
function modelCost(m: LoadedModel, bodyBytesPerWeight: number): { weightBytes: number; flopsPerToken: number } {
  const c = m.config;
  const attn = c.hiddenSize * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  const mlp = 3 * c.hiddenSize * c.intermediateSize;
  const body = c.numLayers * (attn + mlp);
  const head = c.vocabSize * c.hiddenSize; // read every decode step, tied or not; never quantized
  const headBytes = m.config.torchDtype === "float32" ? 4 : 2;
  return { weightBytes: body * bodyBytesPerWeight + head * headBytes, flopsPerToken: 2 * body };
}

let nextSeq = 1;

/** Milliseconds for one n-token prompt of a fresh sequence, logits of the last token only (llama-bench's pp). */
export async function prefillOnce(m: LoadedModel, n: number): Promise<number> {
  const seq = nextSeq++;
  const tokens = new Int32Array(n);
  for (let i = 0; i < n; i++) tokens[i] = 3 + ((i * 7919) % (m.config.vocabSize - 3));
  const t0 = performance.now();
  await m.native.forward({ seqIds: Int32Array.of(seq), tokens, counts: Int32Array.of(n), logits: "last" });
  const ms = performance.now() - t0;
  m.native.freeSeq(seq);
  return ms;
}

/**
 * Milliseconds for `steps` greedy decode steps of `batch` sequences, after a (untimed) prompt of
 * `prompt` tokens each: 1 as llama-bench's tg, the prompt length for llama-batched-bench's S_TG.
 */
export async function decodeOnce(m: LoadedModel, steps: number, batch: number, prompt = 1): Promise<number> {
  const V = m.config.vocabSize;
  const seqIds = Int32Array.from({ length: batch }, () => nextSeq++);
  let tokens = Int32Array.from({ length: batch * prompt }, (_, i) => 1 + ((Math.floor(i / prompt) + (i % prompt) * 7919) % (V - 1)));
  // greedy rows (temperature 0, top_p 1), sampled by the step as the engine asks for them
  const params = new Float64Array(batch * SAMPLE_FIELDS);
  for (let b = 0; b < batch; b++) params.set([b, 0, 0, 1, 0, 0], b * SAMPLE_FIELDS);
  const out = new Float32Array(batch * V);
  const picked = [new Int32Array(batch), new Int32Array(batch)];
  await m.native.forward({ seqIds, tokens, counts: new Int32Array(batch).fill(prompt), logits: "last", out, sample: { params, tokens: picked[0]! } });
  const counts = new Int32Array(batch).fill(1);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    // the step reads its input ids while it writes the next ones: two buffers, alternating
    tokens = picked[s % 2]!;
    await m.native.forward({ seqIds, tokens, counts, logits: "last", out, sample: { params, tokens: picked[(s + 1) % 2]! } });
  }
  const ms = performance.now() - t0;
  for (const id of seqIds) m.native.freeSeq(id);
  return ms;
}

export async function runSpeed(report: Report, c: SpeedCase, limits: MachineLimits, threads: number): Promise<void> {
  const tp = c.tensorParallel ?? 1;
  const m = await loadModel(c.dir, { threads, kvBlocks: 1024, tensorParallel: tp, matmulPrecision: c.matmulPrecision, kvDtype: c.kvDtype });
  const kv = m.native.device().kvDtype;
  try {
    const cost = modelCost(m, c.bytesPerWeight ?? (m.config.torchDtype === "float32" ? 4 : 2));
    await prefillOnce(m, 16); // warm-up: page in the weights, size the buffers
    for (const n of c.prefill) {
      let best = Infinity;
      for (let r = 0; r < c.reps; r++) best = Math.min(best, await prefillOnce(m, n));
      const tps = (n * 1000) / best;
      const gflops = (tps * cost.flopsPerToken) / 1e9;
      report.add({
        name: `${c.label} prefill pp${n}`,
        value: tps,
        unit: "tok/s",
        config: { model: c.label, threads, tp, precision: m.matmulPrecision, tokens: n, gflops: Math.round(gflops * 10) / 10 },
        limit: { name: "GEMM peak", value: limits.gemmGFlops, unit: "GFLOP/s", fraction: gflops / limits.gemmGFlops },
      });
    }
    for (const d of c.decode) {
      let best = Infinity;
      for (let r = 0; r < c.reps; r++) best = Math.min(best, await decodeOnce(m, d.tokens, d.batch));
      const steps = (d.tokens * 1000) / best;
      const gbps = (steps * cost.weightBytes) / 1e9;
      report.add({
        name: `${c.label} decode tg${d.tokens} batch ${d.batch}`,
        value: steps * d.batch,
        unit: "tok/s",
        config: { model: c.label, threads, tp, tokens: d.tokens, batch: d.batch, kv_dtype: kv, weight_gbps: Math.round(gbps * 10) / 10 },
        limit: { name: "triad bandwidth", value: limits.triadGBps, unit: "GB/s", fraction: gbps / limits.triadGBps },
      });
    }
  } finally {
    m.dispose();
  }
}
