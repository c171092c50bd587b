// Request fields -> the engine's SamplingParams, with OpenAI's defaults and the checks
// a schema cannot express (context length, logit_bias ids within the vocabulary).
import type { SamplingParams } from "../../engine/types.js";
import { errors } from "../http/errors.js";

/** The request fields both endpoints share, as the schemas leave them (null = absent). */
export interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  stop?: string | string[] | null;
  ignore_eos?: boolean | null;
}

export interface LimitsInput {
  /** the client's max_tokens / max_completion_tokens; null = use the default */
  requested: number | null;
  /** the default when the client gives none: null = the rest of the context */
  defaultMaxTokens: number | null;
  promptTokens: number;
  maxContext: number;
  /** "messages" or "prompt[i]": the error's param, as OpenAI names it */
  promptParam: string;
}

/** The completion budget for one prompt, or a 400 when prompt + budget exceed the context. */
export function resolveMaxTokens(l: LimitsInput): number {
  const room = l.maxContext - l.promptTokens;
  if (l.requested !== null) {
    if (l.requested > room)
      throw errors.contextLengthExceeded(l.maxContext, l.promptTokens, l.requested, l.promptParam);
    return l.requested;
  }
  if (room < 1) throw errors.contextLengthExceeded(l.maxContext, l.promptTokens, 1, l.promptParam);
  return l.defaultMaxTokens === null ? room : Math.min(l.defaultMaxTokens, room);
}

function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === "string" ? [stop] : stop).filter((s) => s.length > 0);
}

function logitBias(bias: Record<string, number> | null | undefined, vocabSize: number): Record<number, number> {
  const out: Record<number, number> = {};
  if (!bias) return out;
  for (const [key, value] of Object.entries(bias)) {
    const id = Number(key);
    if (!Number.isSafeInteger(id) || id >= vocabSize)
      throw errors.invalidRequest(
        `Invalid key '${key}' in 'logit_bias': token ids must be below the vocabulary size (${vocabSize}).`,
        "logit_bias",
      );
    out[id] = value;
  }
  return out;
}

/**
 * Params for choice `choice` (0-based over the whole request). A given seed becomes
 * seed + choice, so n choices differ from each other yet the request repeats exactly.
 */
export function samplingParams(
  f: SamplingFields,
  extra: { maxTokens: number; logprobs: boolean; topLogprobs: number; vocabSize: number; choice: number },
): SamplingParams {
  const params: SamplingParams = {
    temperature: f.temperature ?? 1,
    // top_p 0 means "only the most likely token"; the sampler wants a positive mass
    topP: f.top_p === null || f.top_p === undefined ? 1 : Math.max(f.top_p, 1e-8),
    topK: f.top_k === null || f.top_k === undefined || f.top_k < 0 ? 0 : f.top_k,
    minP: f.min_p ?? 0,
    presencePenalty: f.presence_penalty ?? 0,
    frequencyPenalty: f.frequency_penalty ?? 0,
    logitBias: logitBias(f.logit_bias, extra.vocabSize),
    maxTokens: extra.maxTokens,
    stop: stopList(f.stop),
    logprobs: extra.logprobs,
    topLogprobs: extra.topLogprobs,
    ignoreEos: f.ignore_eos ?? false,
  };
  if (f.seed !== null && f.seed !== undefined) params.seed = f.seed + extra.choice;
  return params;
}
