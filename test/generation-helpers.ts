// Shared by the sampling, scheduler and engine tests: a full SamplingParams with
// greedy defaults, and a generation drained into its tokens, text and final event.
import type { GenerationEvent, SamplingParams } from "../engine/types.js";

export function samplingParams(over: Partial<SamplingParams> = {}): SamplingParams {
  return {
    temperature: 0,
    topP: 1,
    topK: 0,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    logitBias: {},
    maxTokens: 16,
    stop: [],
    logprobs: false,
    topLogprobs: 0,
    ignoreEos: false,
    ...over,
  };
}

export interface Collected {
  tokens: number[];
  text: string;
  done: Extract<GenerationEvent, { type: "done" }>;
}

export async function collect(it: AsyncIterable<GenerationEvent>): Promise<Collected> {
  const tokens: number[] = [];
  let text = "";
  for await (const ev of it) {
    if (ev.type === "delta") {
      tokens.push(...ev.tokenIds);
      text += ev.text;
    } else return { tokens, text, done: ev };
  }
  throw new Error("no done event");
}
