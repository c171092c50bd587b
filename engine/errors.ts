// The engine's one error class: a stable string code the server maps to an HTTP status.

export type EngineErrorCode =
  | "queue_full" // waiting queue at maxQueue (429)
  | "context_length_exceeded" // prompt + max_tokens over the context (400)
  | "cancelled" // the request's AbortSignal fired or its iterator was closed
  | "engine_closed" // close() was called (503)
  | "invalid_request" // empty prompt, token id out of range, max_tokens < 1 (400)
  | "internal"; // a forward step failed (500)

export class EngineError extends Error {
  constructor(
    message: string,
    readonly code: EngineErrorCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "EngineError";
  }
}
