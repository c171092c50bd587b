// Run as a child process (node --expose-gc) by test/zero.test.ts: N ranks of stories260K with
// every base weight trainable join one ZeRO group at `stage` and take two optimizer steps on
// fixed batches. Prints one JSON line: what the engine's accounting says the group holds
// (Σ over ranks of params + grads + moments) and what the process really gained meanwhile —
// malloc's bytes in use (mallinfo2) and the resident set — measured after the models were
// loaded and made trainable, so both deltas hold only what the group and its steps added —
// and, at stage 3, the resident bytes a release of the gathered params gives back.
import { native, type OptimizerStep, type TrainBatch, type ZeroStage } from "../native/index.js";
import { loadModel } from "../engine/model.js";
import { DataParallelModel } from "../engine/train/loop/data-parallel.js";
import { Rng } from "./reference/check.js";
import { storiesDir } from "./test-model.js";

const [stage, N] = [Number(process.argv[2]) as ZeroStage, Number(process.argv[3])];
const OPT: OptimizerStep = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
const gc = (globalThis as { gc?: () => void }).gc!;

function batch(rng: Rng, V: number): TrainBatch {
  const counts = Int32Array.of(24, 24);
  const tokens = Int32Array.from({ length: 48 }, () => rng.int(V));
  const targets = Int32Array.from({ length: 48 }, () => rng.int(V));
  return { tokens, counts, targets, adapter: null, values: false, grad: true, checkpoint: false };
}

/**
 * After a full GC, once the reading has settled: V8 may free the backing stores of dead
 * ArrayBuffers on a background thread a little after gc() returns, so read until two
 * readings 20 ms apart agree within 16 KiB.
 */
async function measure(): Promise<{ malloc: number; rss: number }> {
  let last = -1;
  for (let i = 0; i < 50; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
    const now = native().mallocBytes();
    if (Math.abs(now - last) <= 16384) break;
    last = now;
  }
  return { malloc: native().mallocBytes(), rss: process.memoryUsage().rss };
}

const models = await Promise.all(Array.from({ length: N }, () => loadModel(storiesDir, { threads: 1, kvBlocks: 2 })));
for (const m of models) m.native.setTrainable({ base: true });
const rng = new Rng(5);
const batches = [batch(rng, models[0].config.vocabSize), batch(rng, models[0].config.vocabSize)];
const before = await measure();
const dp = new DataParallelModel(models.map((m) => m.native), stage);
for (const b of batches) {
  const { logp } = await dp.trainForward(b);
  await dp.trainBackward(new Float32Array(logp.length).fill(-1 / logp.length), null);
  await dp.step(OPT);
}
const after = await measure();
const mem = dp.group.trainingMemory();
const accounted = mem.reduce((a, m) => a + m.params + m.grads + m.optimizer, 0);
// stage 3 releases the whole params by handing their pages back (madvise), not by freeing
// them: malloc still counts the buffers, the resident set drops. Gather and release again
// and measure what the release gives back (0 below stage 3, where both are no-ops); the
// median of 5 such cycles, since the resident set also moves when the allocator or V8 hands
// other pages back in between.
const cycles: number[] = [];
for (let i = 0; i < 5; i++) {
  dp.group.gather();
  const gathered = await measure();
  dp.group.release();
  const released = await measure();
  cycles.push(gathered.rss - released.rss);
}
const releasedResident = cycles.sort((a, b) => a - b)[2];
console.log(JSON.stringify({ stage, N, accounted, ranks: mem, malloc: after.malloc - before.malloc, rss: after.rss - before.rss, releasedResident }));
for (const m of models) m.dispose();
