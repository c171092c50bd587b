// cli/progress-bar.ts's file-write progress as a log (no terminal) sees it: nothing for a
// small file; for a big one a line when it starts, one every few seconds with the ETA, and
// one when it is written — each file on its own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { Progress } from "../cli/progress-bar.js";

function logStream(): { stream: NodeJS.WriteStream; lines: () => string[] } {
  let text = "";
  const w = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream: Object.assign(w, { isTTY: false }) as unknown as NodeJS.WriteStream, lines: () => text.split("\n").filter(Boolean) };
}

const MIB = 2 ** 20;

test("small files pass silently; a big one is announced, followed with its ETA, and reported written", (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 0 });
  const log = logStream();
  const p = new Progress("test", { stream: log.stream, writeBarMinBytes: 10 * MIB });
  const writing = p.writing();
  writing(1 * MIB, 2 * MIB, "adapter_model.safetensors");
  writing(2 * MIB, 2 * MIB, "adapter_model.safetensors");
  assert.deepEqual(log.lines(), []);

  const total = 40 * MIB;
  writing(0, total, "model.safetensors");
  t.mock.timers.tick(2000);
  writing(4 * MIB, total, "model.safetensors"); // too soon for another line
  t.mock.timers.tick(3000);
  writing(10 * MIB, total, "model.safetensors"); // 10 MiB in 5 s: 30 MiB to go take 15 s
  t.mock.timers.tick(15_000);
  writing(total, total, "model.safetensors");
  writing(0, 2 * total, "optimizer.safetensors");
  writing(2 * total, 2 * total, "optimizer.safetensors");
  p.stop();
  assert.deepEqual(log.lines(), [
    "writing model.safetensors (40.0 MiB)",
    "writing model.safetensors: 25% (10.0/40.0 MiB), eta 15s",
    "wrote model.safetensors (40.0 MiB) in 20.0 s",
    "writing optimizer.safetensors (80.0 MiB)",
    "wrote optimizer.safetensors (80.0 MiB) in 0.0 s",
  ]);
});
