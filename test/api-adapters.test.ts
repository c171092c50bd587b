// `serve --adapter NAME=DIR`: each PEFT adapter is served as its own model id on the one
// base (no second copy of the weights), chosen per request by `model`, through the official
// `openai` client on a real socket. The reference is a cache-free greedy decode: every step
// re-runs the whole sequence through the native forward with the adapter, so the served
// path (KV cache, continuous batching, mixed base/adapter batches) is checked against it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, savePeftAdapter } from "../engine/peft.js";
import { createServer, type HybridchatServer } from "../server/server.js";
import { Rng } from "../engine/rng.js";
import { testModelDir } from "./api-helpers.js";

const BASE = "stories260K";
const ADAPTER = "storyteller";
const work = mkdtempSync(join(tmpdir(), "hc-adapters-"));
const adapterDir = join(work, "adapter");

let server: HybridchatServer;
let client: OpenAI;
/** a second copy of the model, with the adapter loaded the same way, for the reference */
let ref: LoadedModel;

/** A PEFT adapter with B ≠ 0 (a trained-looking adapter), written by savePeftAdapter. */
async function writeAdapter(): Promise<void> {
  const m = await loadModel(testModelDir, { threads: 1 });
  try {
    addAdapter(m.native, "tmp", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "up", "down"], seed: 7 }, valueHead: false });
    const rng = Rng.stream(11, "adapter-test");
    for (const p of m.native.parameters("tmp")) {
      if (!p.name.endsWith("lora_B")) continue;
      const n = p.shape.reduce((a, b) => a * b, 1);
      m.native.writeParameter("tmp", p.name, Float32Array.from({ length: n }, () => 0.4 * rng.normal()));
    }
    await savePeftAdapter(m.native, m.config, "tmp", adapterDir, { baseModel: BASE });
  } finally {
    m.dispose();
  }
}

/** Greedy decode without a KV cache: the whole sequence again at every step. */
async function greedyNoCache(m: LoadedModel, adapter: string | null, prompt: number[], steps: number): Promise<number[]> {
  const V = m.config.vocabSize;
  const seq = [...prompt];
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const id = 1_000_000 + s;
    const logits = await m.native.forward({ seqIds: Int32Array.of(id), tokens: Int32Array.from(seq), counts: Int32Array.of(seq.length), logits: "last", adapters: [adapter] });
    m.native.freeSeq(id);
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v]! > logits[best]!) best = v;
    if (m.tokenizer.eosIds.includes(best)) break;
    seq.push(best);
    out.push(best);
  }
  return out;
}

before(async () => {
  await writeAdapter();
  server = createServer({ model: testModelDir, threads: 2, adapters: [{ name: ADAPTER, dir: adapterDir }], logger: false });
  const url = await server.listen({ port: 0 });
  await server.ready;
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  ref = await loadModel(testModelDir, { threads: 1 });
  const { loadPeftAdapter } = await import("../engine/peft.js");
  await loadPeftAdapter(ref.native, ref.config, ADAPTER, adapterDir);
});
after(async () => {
  await server?.close();
  ref?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe("serve --adapter", () => {
  test("/v1/models lists the base and the adapter, the adapter with the base as parent", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m);
    assert.deepEqual(ids.map((m) => m.id), [BASE, ADAPTER]);
    const a = (await client.models.retrieve(ADAPTER)) as OpenAI.Model & { parent: string | null; root: string };
    assert.equal(a.parent, BASE);
    assert.equal(a.root, BASE);
  });

  test("each model id answers with its own weights, equal to a cache-free reference decode", async () => {
    const prompt = "Once upon a time";
    const promptIds = ref.tokenizer.encode(prompt, true);
    const max = 24;
    const texts = new Map<string, string>();
    for (const [model, adapter] of [[BASE, null], [ADAPTER, ADAPTER]] as const) {
      const r = await client.completions.create({ model, prompt, max_tokens: max, temperature: 0 });
      assert.equal(r.model, model);
      const want = ref.tokenizer.decode(await greedyNoCache(ref, adapter, promptIds, max), true);
      assert.equal(r.choices[0]!.text, want, `${model}: served text equals the reference decode`);
      texts.set(model, r.choices[0]!.text);
    }
    assert.notEqual(texts.get(ADAPTER), texts.get(BASE), "the adapter changes what the model says");
  });

  test("base and adapter requests batched together give what each gives alone", async () => {
    const messages = [{ role: "user" as const, content: "Lily and the big dog" }];
    const alone = new Map<string, string>();
    for (const model of [BASE, ADAPTER]) {
      const r = await client.chat.completions.create({ model, messages, max_tokens: 32, temperature: 0 });
      alone.set(model, r.choices[0]!.message.content!);
    }
    const mixed = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? ADAPTER : BASE)).map(async (model) => {
        const r = await client.chat.completions.create({ model, messages, max_tokens: 32, temperature: 0 });
        return { model, text: r.choices[0]!.message.content! };
      }),
    );
    for (const { model, text } of mixed) assert.equal(text, alone.get(model), `${model} in a mixed batch`);
  });

  test("an unknown model id is a 404 that names the served ids", async () => {
    await assert.rejects(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "hi" }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.match(e.message, /stories260K.*storyteller/);
      return true;
    });
  });
});
