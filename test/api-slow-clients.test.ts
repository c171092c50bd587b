// Issue 16 item 2: slow clients cannot hold connections. On a real socket (127.0.0.1) with
// short limits: headers trickled (slowloris), a body trickled, a body shorter than its
// Content-Length, a big body sent without a key, and more connections than one address may
// hold — each is answered and closed within a bounded time, while a normal client is served.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { serveModel, type TestServing } from "./api-helpers.js";

const KEY = "slow-clients-admin-key";
const LIMITS = { headersTimeoutMs: 1_000, requestTimeoutMs: 3_000, bodyIdleMs: 1_000, keepAliveMs: 2_000, maxConnectionsPerAddress: 16, checkIntervalMs: 200 };
let s: TestServing;
let port: number;

before(async () => {
  s = await serveModel({ app: { limits: LIMITS, apiKeys: [{ key: KEY, role: "admin" }] } });
  const url = await s.app.listen({ host: "127.0.0.1", port: 0 });
  port = Number(new URL(url).port);
});
after(async () => {
  await s.close();
});

interface Conn {
  socket: Socket;
  /** settles when the server closes the connection: what it answered, and when (ms after open) */
  closed: Promise<{ answer: string; ms: number }>;
}

function open(): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (answer += d));
    const closed = new Promise<{ answer: string; ms: number }>((res) => socket.on("close", () => res({ answer, ms: performance.now() - t0 })));
    socket.on("error", () => undefined);
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

/** writes `text` one byte every `everyMs` until the connection closes */
function trickle(c: Conn, text: string, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (c.socket.destroyed || !c.socket.writable || i >= text.length) return clearInterval(timer);
    c.socket.write(text[i++]!);
  }, everyMs);
  void c.closed.then(() => clearInterval(timer));
}

const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? NaN);
const errorCode = (answer: string) => (JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { error: { code: string } }).error.code;

async function chat(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 2 }),
  });
  await res.arrayBuffer();
  return res.status;
}

const head = (extra: string) => `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${extra}`;

describe("slow clients", { timeout: 20_000 }, () => {
  test("slowloris: headers trickled on 10 connections get 408 and are closed; a normal client is served meanwhile", async () => {
    const conns = await Promise.all(Array.from({ length: 10 }, open));
    for (const c of conns) {
      c.socket.write(head(""));
      trickle(c, "X-Slow: " + "a".repeat(200), 100);
    }
    assert.equal(await chat(), 200);
    for (const c of conns) {
      const { answer, ms } = await c.closed;
      assert.equal(status(answer), 408, answer);
      assert.equal(errorCode(answer), "request_timeout");
      assert.ok(ms < LIMITS.headersTimeoutMs + 3_000, `closed after ${ms} ms`);
    }
  });

  test("a body trickled one byte at a time (never silent long) ends at the request deadline", async () => {
    const c = await open();
    c.socket.write(head(`Authorization: Bearer ${KEY}\r\nContent-Length: 1000\r\n\r\n`));
    trickle(c, "{".padEnd(1000, " "), 200);
    const { answer, ms } = await c.closed;
    assert.equal(status(answer), 408, answer);
    assert.ok(ms > LIMITS.requestTimeoutMs - 500 && ms < LIMITS.requestTimeoutMs + 3_000, `closed after ${ms} ms`);
  });

  test("a body shorter than its Content-Length ends after the body's idle limit", async () => {
    const c = await open();
    c.socket.write(head(`Authorization: Bearer ${KEY}\r\nContent-Length: 1000\r\n\r\n{"model":`));
    const { answer, ms } = await c.closed;
    assert.equal(status(answer), 408, answer);
    assert.ok(ms > LIMITS.bodyIdleMs - 200 && ms < LIMITS.requestTimeoutMs, `closed after ${ms} ms`);
  });

  test("a body without a key is refused before it is read, and the connection closes", async () => {
    const c = await open();
    c.socket.write(head(`Content-Length: 100000000\r\n\r\n{"model":`));
    const { answer, ms } = await c.closed;
    assert.equal(status(answer), 401, answer);
    assert.match(answer, /connection: close/i);
    assert.ok(ms < LIMITS.bodyIdleMs, `closed after ${ms} ms`);
  });

  test("one address holds at most maxConnectionsPerAddress connections; the next is told 429", async () => {
    const conns = await Promise.all(Array.from({ length: LIMITS.maxConnectionsPerAddress }, open));
    const extra = await open();
    const { answer, ms } = await extra.closed;
    assert.equal(status(answer), 429, answer);
    assert.equal(errorCode(answer), "too_many_connections");
    assert.match(answer, /retry-after: 1/i);
    assert.ok(ms < LIMITS.headersTimeoutMs, `answered after ${ms} ms`);
    for (const c of conns) c.socket.destroy();
    await Promise.all(conns.map((c) => c.closed));
    // closed connections no longer count
    assert.equal(await chat(), 200);
  });
});
