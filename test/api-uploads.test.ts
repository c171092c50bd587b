// Big training files over real HTTP: an upload streams to disk (the server's RSS grows by
// far less than the file), /health stays quick during a 100 MB upload and while a job is
// created on a 5 MB file, an upload cut off mid-body leaves no row and no temp file, and
// the stated limits (bytes, lines, line length) are refused by name.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request, type IncomingMessage } from "node:http";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { testModelDir } from "./api-helpers.js";
import { serve, stop, type Served } from "./serve-process.js";
import { startServer, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

const MiB = 1024 * 1024;
const BOUNDARY = "----hybridchat-upload-test";

/** one supervised line of `bytes` bytes (newline included) */
function sftLine(i: number, bytes: number): string {
  const head = `{"prompt":"Once upon a time ${i}","completion":" `;
  const tail = `"}\n`;
  return head + "x".repeat(Math.max(1, bytes - head.length - tail.length)) + tail;
}

interface Upload {
  /** total file bytes; lines of `lineBytes` */
  fileBytes: number;
  lineBytes: number;
  /** send no Content-Length (chunked) */
  chunked?: boolean;
  /** stop sending after this many file bytes and reset the connection */
  cutAfter?: number;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** POST /v1/files with a multipart body generated as it is sent (the client holds one line at a time). */
function upload(url: string, u: Upload): Promise<Answer> {
  const head = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  const headers: Record<string, string | number> = { "content-type": `multipart/form-data; boundary=${BOUNDARY}` };
  if (!u.chunked) headers["content-length"] = head.length + u.fileBytes + tail.length;
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/files`, { method: "POST", headers }, (res: IncomingMessage) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on("error", (e) => (u.cutAfter !== undefined ? resolve({ status: 0, body: {} }) : reject(e)));
    let sent = 0;
    let i = 0;
    const pump = (): void => {
      for (;;) {
        if (u.cutAfter !== undefined && sent >= u.cutAfter) {
          req.destroy();
          return;
        }
        if (sent >= u.fileBytes) {
          req.end(tail);
          return;
        }
        const line = Buffer.from(sftLine(i++, Math.min(u.lineBytes, u.fileBytes - sent)));
        sent += line.length;
        if (!req.write(line)) {
          req.once("drain", pump);
          return;
        }
      }
    };
    req.write(head);
    pump();
  });
}

/** ms for a GET /health */
async function healthMs(url: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${url}/health`).catch((e: Error) => {
    throw new Error(`GET /health: ${e.message} (${String((e.cause as Error | undefined)?.message)})`);
  });
  await r.arrayBuffer();
  assert.equal(r.status, 200);
  return performance.now() - t0;
}

/** /health pinged back to back until `done` settles; the slowest answer */
async function slowestHealthDuring(url: string, done: Promise<unknown>): Promise<number> {
  let over = false;
  void done.finally(() => (over = true)).catch(() => undefined);
  let worst = 0;
  while (!over) {
    worst = Math.max(worst, await healthMs(url));
    await sleep(20);
  }
  return worst;
}

async function idleHealthMs(url: string): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < 20; i++) t.push(await healthMs(url));
  return t.sort((a, b) => a - b)[10]!;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

const tempsIn = (dataDir: string): string[] => readdirSync(join(dataDir, "files")).filter((n) => n.startsWith(".upload-"));

describe("a served process", () => {
  const dir = mkdtempSync(join(tmpdir(), "hc-uploads-"));
  const dataDir = join(dir, "data");
  let s: Served;
  before(async () => {
    s = await serve(["--model", testModelDir, "--data-dir", dataDir]);
  });
  after(async () => {
    if (s) await stop(s, "SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });

  test("a 100 MB upload: RSS grows by far less than the file, /health stays quick, the file is kept whole", async () => {
    // first use starts the checking worker thread and warms the upload path: a one-time
    // cost per process, not one that grows with the file
    const warm = await upload(s.url, { fileBytes: MiB, lineBytes: 200 });
    assert.equal(warm.status, 200);
    const idle = await idleHealthMs(s.url);
    const pid = s.child.pid!;
    const rss0 = rssBytes(pid);
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 25);
    const fileBytes = 100 * MiB;
    const sent = upload(s.url, { fileBytes, lineBytes: 200 });
    const worst = await slowestHealthDuring(s.url, sent);
    const r = await sent;
    clearInterval(sampler);
    peak = Math.max(peak, rssBytes(pid));
    const grew = peak - rss0;
    process.stderr.write(`100 MB upload: RSS ${(rss0 / MiB).toFixed(0)} → peak ${(peak / MiB).toFixed(0)} MiB (+${(grew / MiB).toFixed(1)}), /health idle ${idle.toFixed(1)} ms, worst during ${worst.toFixed(1)} ms\n`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.bytes, fileBytes);
    assert.equal(r.body.status, "processed");
    // held whole, the file alone is +100 MiB and its text as many again (it was +540 MiB);
    // streamed, what grows is garbage the collector has not taken yet (64 KiB socket chunks,
    // the checker's strings): +34 MiB measured on a loaded 2-core machine. Half the file
    // keeps room for a busier GC while still failing any copy of the whole file.
    assert.ok(grew < fileBytes / 2, `RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
    // checked on the event loop, 100 MB of lines held it for several seconds; streamed and
    // checked on a worker, /health waits only for CPU on a machine running other builds
    // (~0.7 s worst measured): 1.5 s, or 50 idle answers on a slower machine
    assert.ok(worst < Math.max(1500, 50 * idle), `/health took ${worst.toFixed(0)} ms during the upload (idle ${idle.toFixed(1)} ms)`);
    assert.deepEqual(tempsIn(dataDir), []);
    const listed = (await (await fetch(`${s.url}/v1/files`)).json()) as { data: { id: string; bytes: number }[] };
    assert.ok(listed.data.some((f) => f.id === r.body.id && f.bytes === fileBytes));
    const del = await fetch(`${s.url}/v1/files/${String(r.body.id)}`, { method: "DELETE" });
    assert.equal(del.status, 200);
  });

  test("an upload cut off mid-body leaves no row and no temp file", async () => {
    const before = ((await (await fetch(`${s.url}/v1/files`)).json()) as { data: unknown[] }).data.length;
    const r = await upload(s.url, { fileBytes: 20 * MiB, lineBytes: 200, cutAfter: 5 * MiB });
    assert.equal(r.status, 0);
    // the server notices the reset, removes the temp file and never writes a row
    for (let i = 0; i < 100 && tempsIn(dataDir).length > 0; i++) await sleep(50);
    assert.deepEqual(tempsIn(dataDir), []);
    const now = ((await (await fetch(`${s.url}/v1/files`)).json()) as { data: unknown[] }).data.length;
    assert.equal(now, before);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  });
});

describe("stated limits", () => {
  const dir = mkdtempSync(join(tmpdir(), "hc-upload-limits-"));
  const dataDir = join(dir, "data");
  let s: FtServer;
  before(async () => {
    s = await startServer(dataDir, { fileLimits: { maxBytes: MiB, maxLines: 1000, maxLineBytes: 4096 } });
  });
  after(async () => {
    await s?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const refused = (r: Answer, status: number, code: string, flag: string) => {
    assert.equal(r.status, status, JSON.stringify(r.body));
    const e = r.body.error as { code: string; message: string; param: string; type: string };
    assert.equal(e.code, code);
    assert.equal(e.type, "invalid_request_error");
    assert.equal(e.param, "file");
    assert.match(e.message, new RegExp(flag));
  };

  test("over --max-file-bytes: 413 before reading (Content-Length) and while streaming (chunked); nothing kept", async () => {
    refused(await upload(s.url, { fileBytes: 2 * MiB, lineBytes: 4000 }), 413, "file_too_large", "1048576 bytes, --max-file-bytes");
    refused(await upload(s.url, { fileBytes: 2 * MiB, lineBytes: 4000, chunked: true }), 413, "file_too_large", "--max-file-bytes");
    assert.deepEqual(tempsIn(dataDir), []);
    assert.equal((await s.client.files.list()).data.length, 0);
  });

  test("over --max-file-lines and --max-line-bytes: 400 naming the limit (and the line)", async () => {
    refused(await upload(s.url, { fileBytes: 1001 * 100, lineBytes: 100 }), 400, "too_many_lines", "1000, --max-file-lines");
    const r = await upload(s.url, { fileBytes: 3 * 5000, lineBytes: 5000 });
    refused(r, 400, "line_too_long", "Line 1 of the file is longer than this server accepts \\(4096 bytes, --max-line-bytes\\)");
    assert.deepEqual(tempsIn(dataDir), []);
  });

  test("a bad line is named with its number, found by the streaming check", async () => {
    const r = await new Promise<Answer>((resolve, reject) => {
      const good = sftLine(0, 100);
      const body = Buffer.from(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="bad.jsonl"\r\n\r\n${good.repeat(700)}{"prompt": 3}\n${good}\r\n--${BOUNDARY}--\r\n`,
      );
      const req = request(`${s.url}/v1/files`, { method: "POST", headers: { "content-type": `multipart/form-data; boundary=${BOUNDARY}`, "content-length": body.length } }, (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.equal(r.status, 400);
    assert.match((r.body.error as { message: string }).message, /line 701: /);
  });
});

describe("a job on a 5 MB file", () => {
  const dir = mkdtempSync(join(tmpdir(), "hc-upload-job-"));
  let s: FtServer;
  before(async () => {
    s = await startServer(join(dir, "data"));
  });
  after(async () => {
    await s?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("/health stays quick while the job's file is copied, checked and encoded", async () => {
    const r = await upload(s.url, { fileBytes: 5 * MiB, lineBytes: 120 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const idle = await idleHealthMs(s.url);
    const job = await s.client.fineTuning.jobs.create({ model: "stories260K", training_file: String(r.body.id), method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1 } } } });
    // until the first optimizer step: the file was validated and every example encoded
    const firstStep = (async () => {
      for (;;) {
        const ev = await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 });
        if (ev.data.some((e) => e.type === "metrics")) return;
        const j = await s.client.fineTuning.jobs.retrieve(job.id);
        assert.ok(j.status === "validating_files" || j.status === "queued" || j.status === "running", JSON.stringify(j.error));
        await sleep(50);
      }
    })();
    const worst = await slowestHealthDuring(s.url, firstStep);
    await firstStep;
    process.stderr.write(`job on a 5 MB file: /health idle ${idle.toFixed(1)} ms, worst until its first step ${worst.toFixed(1)} ms\n`);
    await s.client.fineTuning.jobs.cancel(job.id);
    await waitForJob(s.client, job.id, ["cancelled"]);
    // on the event loop, parsing and tokenizing a 5 MB file stalled requests for 7.7 s; in
    // slices it holds the loop ~10 ms at a time (~0.3 s worst measured, loaded machine)
    assert.ok(worst < Math.max(1500, 50 * idle), `/health took ${worst.toFixed(0)} ms while the job started (idle ${idle.toFixed(1)} ms)`);
  });
});
