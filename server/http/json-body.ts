// JSON request bodies: small ones parsed in place by Fastify's own parser; large ones (a
// long prompt, a big schema) on a worker thread, so parsing a multi-megabyte body never
// holds up the other requests (a 10 MB body took ~300 ms of the event loop).
import type { FastifyInstance } from "fastify";
import { WorkerCalls } from "../../engine/worker-calls.js";
import { errors } from "./errors.js";

/** bodies from this size on are parsed on the worker (well under a millisecond below it) */
export const WORKER_JSON_BYTES = 256 * 1024;

export function installJsonBodyParser(app: FastifyInstance): void {
  const parseInPlace = app.getDefaultJsonParser("error", "error");
  const worker = new WorkerCalls<Uint8Array, unknown>(new URL("./json-body-worker.js", import.meta.url), null);
  app.addHook("onClose", () => worker.close());
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body: Buffer, done) => {
    if (body.length < WORKER_JSON_BYTES) return parseInPlace(request, body.toString("utf8"), done);
    // a copy the worker owns (Fastify's buffer may be a slice of a shared pool)
    const bytes = new Uint8Array(body);
    worker.call(bytes, [bytes.buffer]).then(
      (value) => done(null, value),
      (e: Error) => done(errors.invalidJson(e.message), undefined),
    );
  });
}
