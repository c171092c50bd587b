// The small typed values the engine's parts and the server talk through.

/** HF config.json resolved to what the engine needs (see engine/config.ts). */
export interface ModelConfig {
  architecture: string; // e.g. "LlamaForCausalLM"
  modelType: string; // e.g. "llama", "mistral", "qwen2", "qwen3"
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** bias on q/k/v (Qwen2 always; Llama/Qwen3 attention_bias) */
  attentionBias: boolean;
  /** bias on o_proj (Llama/Qwen3 attention_bias) */
  oBias: boolean;
  /** bias on gate/up/down (Llama mlp_bias) */
  mlpBias: boolean;
  qkNorm: boolean;
  /** per layer: 0 = full causal attention, W = each query sees its last W keys (itself included) */
  layerWindows: number[];
  tieWordEmbeddings: boolean;
  torchDtype: string | null;
}

export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

/** Per-request sampling settings, already validated and defaulted by the server. */
export interface SamplingParams {
  /** 0 means greedy */
  temperature: number;
  topP: number; // 1 = off
  topK: number; // 0 = off
  minP: number; // 0 = off
  /** same seed, same output, whatever else is in the batch; undefined = random */
  seed?: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** token id -> bias added to its logit (-100 bans, 100 forces) */
  logitBias: Record<number, number>;
  maxTokens: number;
  /** strings that end the output; never included in the text */
  stop: string[];
  /** when set, return the log-prob of each chosen token and `topLogprobs` alternatives */
  logprobs: boolean;
  topLogprobs: number;
  /** keep going past end-of-sequence tokens (benchmarks) */
  ignoreEos: boolean;
}

export interface TokenLogprob {
  token: string;
  tokenId: number;
  logprob: number;
  bytes: number[];
  top: { token: string; tokenId: number; logprob: number; bytes: number[] }[];
}

export type FinishReason = "stop" | "length";

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface GenerateRequest {
  /** already tokenized prompt (chat template applied, BOS included as the model wants) */
  promptTokens: number[];
  params: SamplingParams;
  /** aborting cancels the generation and frees its KV cache at once */
  signal?: AbortSignal;
  /** the LoRA adapter (loaded on the native model) this request runs with; absent = the base */
  adapter?: string | null;
  /** a grammar every sampled token must follow; the engine owns it from the call on and disposes it when the request ends */
  constraint?: TokenConstraint | null;
  /**
   * log-probs of the prompt's own tokens (echo + logprobs), with this many alternatives each;
   * null/absent: none. They come in one delta event once the prompt is read, the first token's null.
   */
  promptLogprobs?: number | null;
  /**
   * a training job's rollout: admitted after every waiting serving request, preempted
   * first, and never counted against maxQueue (the job bounds how many it sends)
   */
  background?: boolean;
}

/** A grammar's state for one generation (engine/grammar/): which tokens may come next. */
export interface TokenConstraint {
  /** the allowed next tokens (bit i of word i >> 5 set = token i allowed); asked once per sampled step */
  nextMask(): Promise<Int32Array>;
  /** advances past the sampled token; false: the grammar does not allow it */
  accept(tokenId: number): boolean;
  /** frees it; idempotent */
  dispose(): void;
}

/**
 * What a running generation yields. `text` deltas never split a UTF-8 character and
 * never include (any prefix of) a stop string that was matched.
 */
export type GenerationEvent =
  | {
      type: "delta";
      text: string;
      tokenIds: number[];
      logprobs: TokenLogprob[];
      /** (once, before any token, when asked for) each prompt token's log-prob given the ones before it; null for the first */
      promptLogprobs?: (TokenLogprob | null)[];
    }
  | {
      type: "done";
      finishReason: FinishReason;
      usage: Usage;
      timings: Timings;
      /** which of the tokenizer's eosIds ended the sequence (models with several differ in meaning); null: a stop string or max tokens did */
      eosTokenId: number | null;
    };

export interface Timings {
  queuedMs: number; // from submit to first scheduled
  prefillMs: number;
  decodeMs: number;
  firstTokenMs: number; // from submit
}

/** Tokenizer surface the generation code needs (implemented in engine/tokenizer.ts). */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** every id that ends generation: tokenizer_config eos + generation_config eos list */
  readonly eosIds: readonly number[];
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: readonly number[], skipSpecialTokens: boolean): string;
  /** the raw bytes one token stands for (byte-fallback and ▁ resolved), for logprobs `bytes` */
  tokenBytes(id: number): Uint8Array;
  /** the token's text as OpenAI shows it in logprobs (may hold U+FFFD for partial bytes) */
  tokenText(id: number): string;
  isSpecial(id: number): boolean;
  /**
   * Incremental detokenizer continuing after `promptIds`: the concatenation of what
   * `push` and `flush` return equals decode(prompt + generated) minus decode(prompt)
   * (specials skipped), and never ends in half a UTF-8 character.
   */
  detokenizer(promptIds: readonly number[]): Detokenizer;
}

export interface Detokenizer {
  push(tokenId: number): string;
  flush(): string;
}

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
  name?: string;
  /** assistant turns: the calls it made, arguments parsed (as transformers hands them to templates) */
  tool_calls?: ChatToolCall[];
  /** tool turns: the call this answers */
  tool_call_id?: string;
}

export interface ChatToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: unknown };
}

export interface ChatTemplate {
  /** whether the template reads `tools` (else tools must be described in a message) */
  readonly rendersTools: boolean;
  /** the template's source, for recognising a model family's tool-call format */
  readonly source: string;
  /**
   * renders with bos_token/eos_token/add_generation_prompt as HF's apply_chat_template does;
   * `tools` (OpenAI's `{type: "function", function}` objects) as transformers passes them
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean, tools?: readonly object[] | null): string;
}
