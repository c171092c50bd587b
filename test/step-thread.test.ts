// A model's heavy calls run on one thread of its own (native/src/addon_step_thread.h), not on
// libuv's pool: the thread exists once per model, from its creation, the calls' CPU time accrues on
// it (and on the model's pool workers), it ends with dispose(), an error inside a call rejects
// with its code and leaves the thread serving, and a pending call keeps the process alive while
// an idle model does not.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { native, type NativeModel } from "../native/index.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Built, type Tiny } from "./tiny-model.js";

// wide enough that one 128-token prefill takes milliseconds on both ranks
const cfg: Tiny = { C: 256, I: 768, L: 4, NH: 8, NKV: 4, HD: 32, V: 512, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };
type Coded = Error & { code?: string };

interface TaskTime {
  name: string;
  ticks: number; // utime + stime, clock ticks
}

/** This process's threads: name and CPU time so far. */
function tasks(): Map<number, TaskTime> {
  const out = new Map<number, TaskTime>();
  for (const t of readdirSync("/proc/self/task")) {
    try {
      const name = readFileSync(`/proc/self/task/${t}/comm`, "utf8").trim();
      // fields after the "(comm)" one: state is field 3, utime 14, stime 15
      const stat = readFileSync(`/proc/self/task/${t}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(t), { name, ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}
const named = (name: string) => [...tasks().values()].filter((t) => t.name === name).length;

async function prefill(m: NativeModel, seq: number, n: number, V: number): Promise<Float32Array> {
  const tokens = Int32Array.from({ length: n }, (_, i) => (i * 37 + seq) % V);
  const r = await m.forward({ seqIds: Int32Array.of(seq), tokens, counts: Int32Array.of(n), logits: "last" });
  m.freeSeq(seq);
  return r;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

describe("the model's own step thread", { skip: process.platform !== "linux" && "reads /proc/self/task" }, () => {
  let dir = "";
  let built: Built;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-step-thread-"));
    built = buildTiny(dir, "wide", cfg, new Rng(freshSeed()));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  // positions enough for 2048-token prompts: the 64 KV blocks of 16 (1024 positions) are the limit
  const open = () => native().createModel({ ...built.spec, maxPositions: 4096 }, built.tensors, { threads: 2, kvBlockSize: 16, kvBlocks: 64 });

  it("runs every call of a model on one thread of its own, which ends with dispose()", async () => {
    const before0 = named("hc-step");
    const m = open();
    try {
      assert.equal(named("hc-step"), before0 + 1, "one thread per model");
      await prefill(m, 1, 8, cfg.V);
      const t0 = tasks();
      // ≥ 0.2 s of CPU: the ticks (10 ms) resolve where it went
      const start = Date.now();
      let calls = 0;
      while (Date.now() - start < 400 || calls < 8) await prefill(m, 2 + calls++, 128, cfg.V);
      const t1 = tasks();
      assert.equal(named("hc-step"), before0 + 1, "still one thread after many calls");
      let step = 0, total = 0;
      const elsewhere: string[] = [];
      for (const [tid, t] of t1) {
        const d = t.ticks - (t0.get(tid)?.ticks ?? 0);
        total += d;
        if (t.name === "hc-step") step += d;
        // the JS thread (tid = pid) queues the calls; the pool workers are the other ranks
        else if (tid !== process.pid && t.name !== "hc-pool" && d > 2) elsewhere.push(`${tid} ${t.name}: ${d} ticks`);
      }
      assert.ok(total >= 10, `the calls took ${total} ticks`);
      assert.ok(step >= total / 4, `the step thread ran ${step} of ${total} ticks`);
      assert.deepEqual(elsewhere, [], "no other thread (libuv's pool) ran the calls");
    } finally {
      m.dispose();
    }
    assert.ok(await until(() => named("hc-step") === before0, 2000), "the thread ends after dispose()");
  });

  it("rejects a failing call with its code and serves the next one", async () => {
    const m = open();
    try {
      const ok = await prefill(m, 1, 16, cfg.V);
      // 64 blocks of 16 positions hold 1024: this prompt cannot fit
      await assert.rejects(prefill(m, 2, 2048, cfg.V), (e: Coded) => e.code === "kv_full");
      assert.deepEqual(await prefill(m, 1, 16, cfg.V), ok, "the same prompt, the same logits");
    } finally {
      m.dispose();
    }
  });

  it("keeps the process alive while a call is pending, not while the model is idle", async () => {
    const from = (p: string) => JSON.stringify(fileURLToPath(new URL(p, import.meta.url)));
    // the child never disposes the model: an idle model must not hold its event loop open
    const script = `
      import { native } from ${from("../native/index.js")};
      import { buildTiny } from ${from("./tiny-model.js")};
      import { Rng } from ${from("./reference/check.js")};
      const b = buildTiny(process.argv[1], "child", JSON.parse(process.argv[2]), new Rng(1));
      const m = native().createModel(b.spec, b.tensors, { threads: 2, kvBlockSize: 16, kvBlocks: 64 });
      m.forward({ seqIds: Int32Array.of(1), tokens: Int32Array.of(1, 2, 3), counts: Int32Array.of(3), logits: "last" })
        .then((r) => console.log("settled " + r.length));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script, dir, JSON.stringify(cfg)], {
      timeout: 60_000,
    });
    assert.equal(stdout.trim(), `settled ${cfg.V}`);
  });
});
