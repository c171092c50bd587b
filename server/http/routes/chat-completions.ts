// POST /v1/chat/completions: non-streamed and SSE-streamed, n choices; structured outputs
// (response_format) and tool calls (tools, tool_choice) through the model's own template.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { performance } from "node:perf_hooks";
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
import { chatPrompt, type ChatPrompt } from "../../serving/tools/tool-prompt.js";
import { ToolOutput } from "../../serving/tools/tool-output.js";

/** Validated body -> one engine request per choice. */
function choiceSpecs(body: ChatCompletionRequest, serving: Serving, variant: ServedVariant, prompt: ChatPrompt): ChoiceSpec[] {
  const logprobs = body.logprobs ?? false;
  const topLogprobs = body.top_logprobs ?? 0;
  if (topLogprobs > 0 && !logprobs)
    throw errors.invalidRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");

  let promptTokens: number[];
  try {
    promptTokens = serving.model.encodeChat(prompt.messages, prompt.tools);
  } catch (e) {
    // templates may raise_exception() on conversations they do not accept (roles not alternating...)
    throw errors.invalidRequest(`The model's chat template rejected these messages: ${(e as Error).message}`, "messages");
  }
  // a forced call: the prompt ends with the family's opener, the grammar writes the call
  if (prompt.plan?.forced) promptTokens = [...promptTokens, ...serving.model.encodeContinuation(prompt.plan.format.forcedOpener)];
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

/** the id of a family's special marker token, when it is one token of this vocabulary */
function markerId(serving: Serving, marker: string | null): number | null {
  if (marker === null) return null;
  const ids = serving.model.encodeContinuation(marker);
  return ids.length === 1 ? ids[0]! : null;
}

export const chatCompletionsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post("/v1/chat/completions", { config: { access: "user", generates: true }, schema: { body: ChatCompletionRequestSchema } }, async (request, reply) => {
    const startedMs = performance.now();
    const body = request.body;
    checkRequest(body, CHAT_PARAMETERS);
    const { serving, variant } = requireServing(opts.slot, body.model);
    const prompt = chatPrompt(body, serving.model.chatTemplate);
    const plan = prompt.plan;
    const formatGrammar = responseFormatGrammar(body.response_format);
    if (plan?.forced && formatGrammar)
      throw errors.invalidRequest("'response_format' cannot be combined with a forced tool call ('tool_choice' \"required\" or a named function).", "response_format");
    const specs = choiceSpecs(body, serving, variant, prompt);
    // auto's grammar (valid calls when the model makes some) steps aside for response_format,
    // and for ignore_eos, which would write on past an answer the grammar has ended
    const grammar = plan?.forced ?? formatGrammar ?? (body.ignore_eos ? null : (plan?.auto ?? null));
    // a finished grammar allows only EOS: generating past it has nothing left to follow
    if (grammar && body.ignore_eos)
      throw errors.invalidRequest("'ignore_eos' cannot be combined with 'response_format' JSON or a forced tool call.", "ignore_eos");
    if (grammar) {
      const constraint = await compileGrammar(serving.model, grammar, formatGrammar && grammar === formatGrammar ? "response_format.json_schema.schema" : "tools");
      for (const s of specs) s.constraint = constraint;
    }
    const signal = clientGone(reply);
    const id = completionId("chatcmpl");
    const created = nowSeconds();
    const tools = plan ? new ToolOutput(plan, id, markerId(serving, plan.format.specialMarker)) : null;
    const head = <O extends string>(object: O) => ({ id, object, created, model: variant.id, system_fingerprint: variant.fingerprint });
    const topLogprobs = body.top_logprobs ?? 0;
    const promptTokens = specs[0]!.promptTokens.length;
    const completion = (results: readonly ChoiceResult[]): ChatCompletionBody => ({
      ...head("chat.completion"),
      choices: results.map((r) => {
        const out = tools ? tools.message(r) : { content: r.text, finishReason: r.finishReason };
        return {
          index: r.index,
          message: { role: "assistant", content: out.content, refusal: null, ...("tool_calls" in out && out.tool_calls ? { tool_calls: out.tool_calls } : {}) },
          logprobs: body.logprobs ? chatLogprobs(r.logprobs, topLogprobs) : null,
          finish_reason: out.finishReason,
        };
      }),
      usage: usageBody(promptTokens, results.reduce((s, r) => s + r.completionTokens, 0)),
    });
    // a stream is recorded as the completion its chunks add up to
    const record = completionRecorder(
      opts.store,
      { id, object: "chat.completion", created, variant, request: body, promptMessages: prompt.history, startedMs, owner: request.apiKeyId },
      completion,
    );

    if (!body.stream) return record(await collectChoices(serving.engine, specs, signal, request.tokenMeter));

    const includeUsage = body.stream_options?.include_usage === true;
    const chunk = (choices: ChatChunkBody["choices"]): ChatChunkBody => {
      const c: ChatChunkBody = { ...head("chat.completion.chunk"), choices };
      if (includeUsage) c.usage = null;
      return c;
    };
    const streamers = new Map(specs.map((s) => [s.index, tools?.streamer(s.index) ?? null]));
    await streamChoices(
      request,
      reply,
      new ChoiceStream(serving.engine, specs, signal, request.tokenMeter),
      promptTokens,
      includeUsage,
      {
        opening: () => specs.map((s) => chunk([{ index: s.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }])),
        delta: (index, event) => {
          const logprobs = body.logprobs && event.logprobs.length > 0 ? chatLogprobs(event.logprobs, topLogprobs) : null;
          const streamer = streamers.get(index);
          const deltas = streamer ? streamer.push(event) : event.text === "" ? [] : [{ content: event.text }];
          // logprobs ride on the event's first chunk (or an empty delta when its text is held back)
          if (deltas.length === 0 && logprobs) deltas.push({});
          return deltas.map((delta, i) => chunk([{ index, delta, logprobs: i === 0 ? logprobs : null, finish_reason: null }]));
        },
        finish: (index, reason) => {
          const end = streamers.get(index)?.end(reason) ?? { deltas: [], finishReason: reason };
          return [
            ...end.deltas.map((delta) => chunk([{ index, delta, logprobs: null, finish_reason: null }])),
            chunk([{ index, delta: {}, logprobs: null, finish_reason: end.finishReason }]),
          ];
        },
        usage: (usage) => ({ ...chunk([]), usage }),
      },
      (results) => void record(results),
    );
  });
};
