// POST /v1/completions (legacy text completions): one or many prompts, n choices each.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { performance } from "node:perf_hooks";
import type { TokenLogprob } from "../../../engine/types.js";
import { errors } from "../errors.js";
import { ChoiceStream, collectChoices, type ChoiceResult, type ChoiceSpec } from "../../serving/generation.js";
import { completionId, completionLogprobs, joinLogprobs, nowSeconds, usageBody } from "../openai-shapes.js";
import { clientGone, requireServing, type RouteOptions } from "../request-context.js";
import { completionRecorder } from "../../serving/record-completion.js";
import { resolveMaxTokens, samplingParams } from "../../serving/sampling.js";
import { CompletionRequestSchema, type CompletionRequest, type PromptInput } from "../schemas/completions.js";
import { COMPLETION_PARAMETERS, checkChoiceCount, checkRequest } from "../schemas/parameters.js";
import type { CompletionBody } from "../schemas/responses.js";
import type { Serving, ServedVariant } from "../../serving/serving.js";
import { streamChoices } from "../../serving/stream-choices.js";

/** OpenAI's default for the legacy endpoint */
const DEFAULT_MAX_TOKENS = 16;

interface Prompt {
  tokens: number[];
  /** what `echo` puts before the completion */
  text: string;
}

function prompts(input: PromptInput, serving: Serving): Prompt[] {
  const { model } = serving;
  const fromIds = (ids: number[], param: string): Prompt => {
    const bad = ids.find((t) => t >= model.vocabSize);
    if (bad !== undefined)
      throw errors.invalidRequest(`Token id ${bad} in '${param}' is out of range (the vocabulary has ${model.vocabSize} tokens).`, param);
    return { tokens: ids, text: model.decode(ids) };
  };
  const fromText = (text: string): Prompt => ({ tokens: model.encodePrompt(text), text });
  if (typeof input === "string") return [fromText(input)];
  const first = input[0];
  if (typeof first === "number") return [fromIds(input as number[], "prompt")];
  if (typeof first === "string") return (input as string[]).map(fromText);
  return (input as number[][]).map((ids, i) => fromIds(ids, `prompt[${i}]`));
}

function choiceSpecs(body: CompletionRequest, serving: Serving, variant: ServedVariant, list: Prompt[]): ChoiceSpec[] {
  const n = body.n ?? 1;
  checkChoiceCount(n * list.length, serving.engine.maxQueue, "n");
  const logprobs = body.logprobs != null;
  const topLogprobs = body.logprobs ?? 0;
  const specs: ChoiceSpec[] = [];
  list.forEach((p, pi) => {
    const maxTokens = resolveMaxTokens({
      requested: body.max_tokens ?? null,
      defaultMaxTokens: DEFAULT_MAX_TOKENS,
      promptTokens: p.tokens.length,
      maxContext: serving.model.maxContext,
      promptParam: list.length > 1 ? `prompt[${pi}]` : "prompt",
    });
    for (let i = 0; i < n; i++) {
      const index = pi * n + i;
      specs.push({
        index,
        promptTokens: p.tokens,
        params: samplingParams(body, { maxTokens, logprobs, topLogprobs, vocabSize: serving.model.vocabSize, choice: index }),
        adapter: variant.adapter,
        // echo + logprobs: the prompt's own log-probs too (lm-evaluation-harness's log-likelihoods)
        promptLogprobs: body.echo && logprobs ? topLogprobs : null,
      });
    }
  });
  return specs;
}

export const completionsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post("/v1/completions", { config: { access: "user", generates: true }, schema: { body: CompletionRequestSchema } }, async (request, reply) => {
    const startedMs = performance.now();
    const body = request.body;
    checkRequest(body, COMPLETION_PARAMETERS);
    const { serving, variant } = requireServing(opts.slot, body.model);
    const list = prompts(body.prompt, serving);
    const specs = choiceSpecs(body, serving, variant, list);
    const n = body.n ?? 1;
    const echo = body.echo === true;
    const topLogprobs = body.logprobs ?? 0;
    const promptTokens = list.reduce((s, p) => s + p.tokens.length, 0);
    const promptOf = (index: number): Prompt => list[Math.floor(index / n)]!;
    const signal = clientGone(reply);
    const head = {
      id: completionId("cmpl"),
      object: "text_completion" as const,
      created: nowSeconds(),
      model: variant.id,
      system_fingerprint: variant.fingerprint,
    };
    // the echoed prompt's tokens, the first one unscored
    const promptItems = (r: { index: number; promptLogprobs: readonly (TokenLogprob | null)[] }) =>
      r.promptLogprobs.map((t, i) => t ?? { token: serving.model.tokenText(promptOf(r.index).tokens[i]!), logprob: null });
    const completion = (results: readonly ChoiceResult[]): CompletionBody => ({
      ...head,
      choices: results.map((r) => {
        const prefix = echo ? promptOf(r.index).text : "";
        return {
          index: r.index,
          text: prefix + r.text,
          logprobs: body.logprobs != null ? joinLogprobs(completionLogprobs(promptItems(r), topLogprobs, 0), completionLogprobs(r.logprobs, topLogprobs, prefix.length)) : null,
          finish_reason: r.finishReason,
        };
      }),
      usage: usageBody(promptTokens, results.reduce((s, r) => s + r.completionTokens, 0)),
    });
    // a stream is recorded as the completion its chunks add up to
    const record = completionRecorder(opts.store, { ...head, variant, request: body, promptMessages: null, startedMs, owner: request.apiKeyId }, completion);

    if (!body.stream) return record(await collectChoices(serving.engine, specs, signal, request.tokenMeter));

    const includeUsage = body.stream_options?.include_usage === true;
    const chunk = (choices: CompletionBody["choices"]): CompletionBody => {
      const c: CompletionBody = { ...head, choices };
      if (includeUsage) c.usage = null;
      return c;
    };
    // where the next token's text starts in each choice's text, for logprobs text_offset
    const offsets = new Map<number, number>();
    await streamChoices(
      request,
      reply,
      new ChoiceStream(serving.engine, specs, signal, request.tokenMeter),
      promptTokens,
      includeUsage,
      {
        // with logprobs, the echoed prompt goes out with its log-probs once they are read
        opening: () =>
          specs.flatMap((s) => {
            const prefix = echo ? promptOf(s.index).text : "";
            offsets.set(s.index, prefix.length);
            return echo && body.logprobs == null ? [chunk([{ index: s.index, text: prefix, logprobs: null, finish_reason: null }])] : [];
          }),
        delta: (index, event) => {
          if (event.promptLogprobs) {
            const items = promptItems({ index, promptLogprobs: event.promptLogprobs });
            return [chunk([{ index, text: promptOf(index).text, logprobs: completionLogprobs(items, topLogprobs, 0), finish_reason: null }])];
          }
          if (event.text === "" && event.logprobs.length === 0) return [];
          const offset = offsets.get(index) ?? 0;
          const logprobs = body.logprobs != null ? completionLogprobs(event.logprobs, topLogprobs, offset) : null;
          offsets.set(index, offset + event.text.length);
          return [chunk([{ index, text: event.text, logprobs, finish_reason: null }])];
        },
        finish: (index, reason) => [chunk([{ index, text: "", logprobs: null, finish_reason: reason }])],
        usage: (usage) => ({ ...chunk([]), usage }),
      },
      (results) => void record(results),
    );
  });
};
