// Issue 16 item 8: a keyless server on loopback and the web pages its user visits. A page of
// another site can neither change state (cross-origin POST, WebSocket) nor read answers by
// DNS rebinding (a Host header naming the attacker's domain); the page gets CSP, no framing,
// nosniff. Programs (no Origin header) are unaffected. Real sockets on 127.0.0.1.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { serveModel, type TestServing } from "./api-helpers.js";
import { Store } from "../server/store/store.js";

let s: TestServing;
let port: number;
const store = Store.open(":memory:");

before(async () => {
  s = await serveModel({ app: { allowedHosts: ["chat.example"], store } });
  port = Number(new URL(await s.app.listen({ host: "127.0.0.1", port: 0 })).port);
});
after(async () => {
  await s.close();
  store.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, agent: false, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (data += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: data }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const code = (a: Answer) => (JSON.parse(a.body) as { error: { code: string } }).error.code;
const chatBody = JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 2 });
const json = { "content-type": "application/json" };

describe("DNS rebinding: the Host header must name this server", () => {
  test("an attacker's name is refused on every route", async () => {
    for (const path of ["/v1/models", "/health", "/"]) {
      const a = await call("GET", path, { host: `attacker.example:${port}` });
      assert.equal(a.status, 403, path);
      assert.equal(code(a), "host_not_allowed");
    }
    const post = await call("POST", "/v1/chat/completions", { host: "attacker.example", ...json }, chatBody);
    assert.equal(post.status, 403);
  });

  test("IP addresses, localhost and --allowed-hosts names are served", async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost", `chat.example:${port}`, "CHAT.example"]) {
      const a = await call("GET", "/v1/models", { host });
      assert.equal(a.status, 200, host);
    }
  });
});

describe("cross-origin requests that change state are refused", () => {
  const evil = { origin: "http://attacker.example" };
  test("a cross-site POST cannot promote a version, store a file or chat", async () => {
    const promote = await call("POST", "/v1/models/stories260K/promote", { ...evil, ...json }, "{}");
    assert.equal(promote.status, 403);
    assert.equal(code(promote), "cross_origin_request");
    // a form's text/plain "simple request" is refused the same way
    const form = await call("POST", "/v1/chat/completions", { ...evil, "content-type": "text/plain" }, chatBody);
    assert.equal(form.status, 403);
    const boundary = "x-boundary";
    const multipart =
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n` +
      `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n\r\n--${boundary}--\r\n`;
    const file = await call("POST", "/v1/files", { ...evil, "content-type": `multipart/form-data; boundary=${boundary}` }, multipart);
    assert.equal(file.status, 403);
    const files = await call("GET", "/v1/files", {});
    assert.equal((JSON.parse(files.body) as { data: unknown[] }).data.length, 0, "no file was stored");
    // another port of the same host is another origin too
    const port2 = await call("POST", "/v1/chat/completions", { origin: `http://127.0.0.1:${port + 1}`, ...json }, chatBody);
    assert.equal(port2.status, 403);
    const nullOrigin = await call("POST", "/v1/chat/completions", { origin: "null", ...json }, chatBody);
    assert.equal(nullOrigin.status, 403);
    const fetchSite = await call("POST", "/v1/chat/completions", { "sec-fetch-site": "cross-site", ...json }, chatBody);
    assert.equal(fetchSite.status, 403);
  });

  test("a cross-origin WebSocket is refused", async () => {
    const a = await call("GET", "/v1/fine_tuning/jobs/ftjob-x/events/stream", {
      ...evil,
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    });
    assert.equal(a.status, 403);
  });

  test("the server's own page and programs without an Origin are served", async () => {
    const own = await call("POST", "/v1/chat/completions", { origin: `http://127.0.0.1:${port}`, "sec-fetch-site": "same-origin", ...json }, chatBody);
    assert.equal(own.status, 200, own.body);
    const program = await call("POST", "/v1/chat/completions", json, chatBody);
    assert.equal(program.status, 200, program.body);
    // reading is not changing: a cross-origin GET is answered (the browser keeps the body from the page)
    const get = await call("GET", "/v1/models", evil);
    assert.equal(get.status, 200);
  });
});

test("the page has a CSP, may not be framed, and nothing is sniffed", async () => {
  const page = await call("GET", "/", {});
  assert.equal(page.status, 200);
  const csp = String(page.headers["content-security-policy"]);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(page.headers["x-frame-options"], "DENY");
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  const api = await call("GET", "/v1/models", {});
  assert.equal(api.headers["x-content-type-options"], "nosniff");
  const script = await call("GET", "/web/app.js", {});
  assert.equal(script.headers["x-content-type-options"], "nosniff");
});
