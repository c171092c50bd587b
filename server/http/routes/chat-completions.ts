// POST /v1/chat/completions: non-streamed and SSE-streamed, n choices.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { performance } from "node:perf_hooks";
import type { ChatMessage } from "../../../engine/types.js";
import { toChatMessage } from "../../serving/chat-messages.js";
import { errors } from "../errors.js";
import { ChoiceStream, collectChoices, type ChoiceResult, type ChoiceSpec } from "../../serving/generation.js";
import { chatLogprobs, completionId, nowSeconds, usageBody } from "../openai-shapes.js";
import { clientGone, requireServing, type RouteOptions } from "../request-context.js";
import { resolveMaxTokens, samplingParams } from "../../serving/sampling.js";
import { completionRecorder } from "../../serving/record-completion.js";
import { ChatCompletionRequestSchema, type ChatCompletionRequest } from "../schemas/chat.js";
import { CHAT_PARAMETERS, checkChoiceCount, checkRequest } from "../schemas/parameters.js";
import type { ChatChunkBody, ChatCompletionBody } from "../schemas/responses.js";
import type { Serving, ServedVariant } from "../../serving/serving.js";
import { streamChoices } from "../../serving/stream-choices.js";
import { compileGrammar, responseFormatGrammar } from "../../serving/structured-output.js";

/** Validated body -> one engine request per choice. */
function choiceSpecs(body: ChatCompletionRequest, serving: Serving, variant: ServedVariant, messages: ChatMessage[]): ChoiceSpec[] {
  const logprobs = body.logprobs ?? false;
  const topLogprobs = body.top_logprobs ?? 0;
  if (topLogprobs > 0 && !logprobs)
    throw errors.invalidRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");

  let promptTokens: number[];
  try {
    promptTokens = serving.model.encodeChat(messages);
  } catch (e) {
    // templates may raise_exception() on conversations they do not accept (roles not alternating...)
    throw errors.invalidRequest(`The model's chat template rejected these messages: ${(e as Error).message}`, "messages");
  }
  const requested = body.max_completion_tokens ?? body.max_tokens ?? null;
  const maxTokens = resolveMaxTokens({
    requested,
    defaultMaxTokens: null,
    promptTokens: promptTokens.length,
    maxContext: serving.model.maxContext,
    promptParam: "messages",
  });
  const n = body.n ?? 1;
  checkChoiceCount(n, serving.engine.maxQueue, "n");
  const specs: ChoiceSpec[] = [];
  for (let i = 0; i < n; i++)
    specs.push({
      index: i,
      promptTokens,
      params: samplingParams(body, { maxTokens, logprobs, topLogprobs, vocabSize: serving.model.vocabSize, choice: i }),
      adapter: variant.adapter,
    });
  return specs;
}

export const chatCompletionsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post("/v1/chat/completions", { config: { access: "user" }, schema: { body: ChatCompletionRequestSchema } }, async (request, reply) => {
    const startedMs = performance.now();
    const body = request.body;
    checkRequest(body, CHAT_PARAMETERS);
    const { serving, variant } = requireServing(opts.slot, body.model);
    const messages = body.messages.map(toChatMessage);
    const specs = choiceSpecs(body, serving, variant, messages);
    const grammar = responseFormatGrammar(body.response_format);
    if (grammar) {
      const constraint = await compileGrammar(serving.model, grammar, "response_format.json_schema.schema");
      for (const s of specs) s.constraint = constraint;
    }
    const signal = clientGone(reply);
    const id = completionId("chatcmpl");
    const created = nowSeconds();
    const head = <O extends string>(object: O) => ({ id, object, created, model: variant.id, system_fingerprint: variant.fingerprint });
    const topLogprobs = body.top_logprobs ?? 0;
    const promptTokens = specs[0]!.promptTokens.length;
    const completion = (results: readonly ChoiceResult[]): ChatCompletionBody => ({
      ...head("chat.completion"),
      choices: results.map((r) => ({
        index: r.index,
        message: { role: "assistant", content: r.text, refusal: null },
        logprobs: body.logprobs ? chatLogprobs(r.logprobs, topLogprobs) : null,
        finish_reason: r.finishReason,
      })),
      usage: usageBody(promptTokens, results.reduce((s, r) => s + r.completionTokens, 0)),
    });
    // a stream is recorded as the completion its chunks add up to
    const record = completionRecorder(
      opts.store,
      { id, object: "chat.completion", created, variant, request: body, promptMessages: messages, startedMs },
      completion,
    );

    if (!body.stream) return record(await collectChoices(serving.engine, specs, signal));

    const includeUsage = body.stream_options?.include_usage === true;
    const chunk = (choices: ChatChunkBody["choices"]): ChatChunkBody => {
      const c: ChatChunkBody = { ...head("chat.completion.chunk"), choices };
      if (includeUsage) c.usage = null;
      return c;
    };
    await streamChoices(
      request,
      reply,
      new ChoiceStream(serving.engine, specs, signal),
      promptTokens,
      includeUsage,
      {
        opening: () => specs.map((s) => chunk([{ index: s.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }])),
        delta: (index, event) =>
          chunk([{ index, delta: { content: event.text }, logprobs: body.logprobs ? chatLogprobs(event.logprobs, topLogprobs) : null, finish_reason: null }]),
        finish: (index, reason) => chunk([{ index, delta: {}, logprobs: null, finish_reason: reason }]),
        usage: (usage) => ({ ...chunk([]), usage }),
      },
      (results) => void record(results),
    );
  });
};
