// The OpenAI response bodies this server sends (types only: responses are built in
// server/http/openai-shapes.ts and serialized as they are).

export interface UsageBody {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

export interface ChatLogprobs {
  content: ChatTokenLogprob[];
  refusal: null;
}

export type FinishReasonBody = "stop" | "length" | "tool_calls" | null;

export interface ToolCallBody {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** a streamed fragment of a tool call: the first one carries id, type and name */
export interface ToolCallDeltaBody {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments: string };
}

export interface ChatCompletionBody {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ToolCallBody[] };
    logprobs: ChatLogprobs | null;
    finish_reason: FinishReasonBody;
  }[];
  usage: UsageBody;
}

export interface ChatChunkBody {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    delta: { role?: "assistant"; content?: string; tool_calls?: ToolCallDeltaBody[] };
    logprobs: ChatLogprobs | null;
    finish_reason: FinishReasonBody;
  }[];
  usage?: UsageBody | null;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

export interface CompletionBody {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    text: string;
    logprobs: CompletionLogprobs | null;
    finish_reason: FinishReasonBody;
  }[];
  usage?: UsageBody | null;
}

export interface ModelBody {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  /** the base model this id runs on (vLLM's extension fields) */
  root: string;
  /** for an adapter, the base it is applied to; null for the base itself */
  parent: string | null;
  /** on the base id only: the version it serves (itself, or the promoted one) */
  serves?: string;
}

export interface ModelListBody {
  object: "list";
  data: ModelBody[];
}
