// The SSE side of both completion endpoints: wait until every choice is admitted (so a
// full queue is still a real 429), then stream each choice's deltas and finish, the usage
// chunk when asked, and [DONE]. The endpoints only say what their chunks look like.
// What was streamed is gathered too, and handed to `beforeDone` (the store) before the
// last chunk: a client that saw [DONE] can count on it being recorded.
import type { FastifyReply, FastifyRequest } from "fastify";
import { EngineError } from "../../engine/errors.js";
import type { GenerationEvent, FinishReason } from "../../engine/types.js";
import { engineErrorToApi } from "../http/error-handler.js";
import { ApiError, errors } from "../http/errors.js";
import { ChoiceCollector, type ChoiceResult, type ChoiceStream } from "./generation.js";
import { usageBody } from "../http/openai-shapes.js";
import type { UsageBody } from "../http/schemas/responses.js";
import { SseWriter } from "../http/sse.js";

export interface ChunkShapes<C> {
  /** chunks sent before any token: the role delta of chat, the echoed prompt of completions */
  opening(): C[];
  /** the chunks one delta event becomes (none: nothing to say yet) */
  delta(index: number, event: Extract<GenerationEvent, { type: "delta" }>): C[];
  /** the chunks that end a choice (held-back text, then the finish_reason chunk) */
  finish(index: number, reason: FinishReason): C[];
  /** the `choices: []` chunk carrying usage (stream_options.include_usage) */
  usage(usage: UsageBody): C;
}

export async function streamChoices<C>(
  request: FastifyRequest,
  reply: FastifyReply,
  stream: ChoiceStream,
  promptTokens: number,
  includeUsage: boolean,
  shapes: ChunkShapes<C>,
  /** runs once every choice finished and the client is still there; throwing fails the stream */
  beforeDone?: (results: ChoiceResult[]) => void,
): Promise<void> {
  await stream.admitted;
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.open();
  try {
    for (const c of shapes.opening()) await sse.send(c);
    let completionTokens = 0;
    const collector = new ChoiceCollector(stream.specs);
    for await (const tagged of stream) {
      if (sse.closed) break;
      collector.add(tagged);
      const { index, event } = tagged;
      if (event.type === "delta") {
        for (const c of shapes.delta(index, event)) await sse.send(c);
      } else {
        completionTokens += event.usage.completionTokens;
        for (const c of shapes.finish(index, event.finishReason)) await sse.send(c);
      }
    }
    if (sse.closed) return;
    beforeDone?.(collector.results());
    if (includeUsage) await sse.send(shapes.usage(usageBody(promptTokens, completionTokens)));
    await sse.done();
  } catch (error) {
    await streamFailure(sse, error, request);
  }
}

// A failure after an event stream has started cannot change the status code any more:
// it is sent as one last `data: {"error": ...}` event, as vLLM and OpenAI do.
async function streamFailure(sse: SseWriter, error: unknown, request: FastifyRequest): Promise<void> {
  const e = error instanceof ApiError ? error : error instanceof EngineError ? engineErrorToApi(error) : errors.internal();
  if (e.status >= 500) request.log.error({ err: error }, "stream failed");
  if (sse.closed) return;
  await sse.send(e.body());
  sse.end();
}
