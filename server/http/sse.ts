// Server-sent events on a raw Node response: `data: <json>\n\n` frames, `data: [DONE]`
// at the end, and backpressure (a slow reader pauses us instead of growing a buffer).
import type { ServerResponse } from "node:http";
import { once } from "node:events";

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  /** Sends the status line and headers; call once, after the request was admitted. */
  open(extraHeaders: Record<string, string> = {}): void {
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      // reverse proxies (nginx) must not buffer a token stream
      "x-accel-buffering": "no",
      ...extraHeaders,
    });
    this.res.flushHeaders?.();
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  async send(data: unknown): Promise<void> {
    await this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** `data: [DONE]`, then the response ends. */
  async done(): Promise<void> {
    await this.#write("data: [DONE]\n\n");
    this.end();
  }

  end(): void {
    if (!this.closed) this.res.end();
  }

  async #write(frame: string): Promise<void> {
    if (this.closed) return;
    if (!this.res.write(frame)) {
      // either the reader catches up or it is gone; both end the wait
      await Promise.race([once(this.res, "drain"), once(this.res, "close")]);
    }
  }
}
