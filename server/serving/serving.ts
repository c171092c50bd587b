// What the HTTP layer needs from the engine and the loaded model, and the slot that
// holds them. The app is built before the model is loaded (so /health can answer
// "loading"); routes read the slot on every request.
import type { ChatMessage, ChatTemplate, GenerateRequest, GenerationEvent, TokenConstraint } from "../../engine/types.js";
import type { GrammarSpec } from "../../engine/grammar/grammars.js";
import type { DeviceInfo, StepCounts } from "../../native/index.js";

/** Makes one generation's grammar state (a compiled grammar's fresh matcher). */
export type ConstraintFactory = () => Promise<TokenConstraint>;

/** The parts of engine/model.ts's LoadedModel the routes use. */
export interface ServedModel {
  /** directory base name; the served name may differ (--served-model-name) */
  readonly id: string;
  /** prompt + completion tokens one sequence may hold */
  readonly maxContext: number;
  readonly untrained: boolean;
  readonly vocabSize: number;
  /** where the forward runs (absent: a test's stand-in model) */
  readonly device?: DeviceInfo;
  /** how its serving steps ran so far: CUDA graph replays vs launched op by op (absent: a test's stand-in) */
  stepCounts?(): StepCounts;
  /** the model's chat template (whether it renders tools, its source for the tool-call family) */
  readonly chatTemplate: ChatTemplate;
  /** chat template applied (with `tools` when given) and tokenized (BOS as the template/tokenizer wants) */
  encodeChat(messages: readonly ChatMessage[], tools?: readonly object[] | null, addGenerationPrompt?: boolean): number[];
  /** text that continues a prompt (a forced tool call's opener): no BOS, special tokens recognised */
  encodeContinuation(text: string): number[];
  /** plain text prompt for /v1/completions (BOS added as the tokenizer wants) */
  encodePrompt(text: string): number[];
  /** token ids back to text (for `echo` of token prompts); specials skipped unless `skipSpecial` is false */
  decode(ids: readonly number[], skipSpecial?: boolean): string;
  /** one token's text as OpenAI shows it in logprobs */
  tokenText(id: number): string;
  /**
   * Compiles `spec` for this model's vocabulary (cached) and returns what makes each
   * choice's constraint. Rejects with UnsupportedSchemaError for keywords outside the
   * subset, or with xgrammar's error for a schema it cannot compile.
   */
  grammar(spec: GrammarSpec): Promise<ConstraintFactory>;
  /** characters (of message contents or a prompt) beyond which no prompt can fit maxContext */
  readonly promptCharLimit: number;
  /**
   * Tokenize on a worker thread; until the returned release is called, encodeChat /
   * encodePrompt of the same input return these ids without tokenizing on the event loop.
   */
  pretokenizeChat(messages: readonly ChatMessage[], tools?: readonly object[] | null): Promise<() => void>;
  pretokenizePrompt(text: string): Promise<() => void>;
}

/** The parts of engine/engine.ts's Engine the routes use. */
export interface ServingEngine {
  generate(req: GenerateRequest): AsyncIterable<GenerationEvent>;
  /** most engine requests that may wait at once (one per choice and prompt) */
  readonly maxQueue: number;
}

/**
 * One id clients may send in `model`: the base weights, or the base with one LoRA adapter
 * (loaded on the same native model: no second copy of the weights).
 */
export interface ServedVariant {
  id: string;
  /** the native adapter name; null = the base weights alone */
  adapter: string | null;
  /** unix seconds, for /v1/models `created` */
  created: number;
  /** `system_fingerprint`: changes when the served weights or the server change */
  fingerprint: string;
}

export interface Serving {
  engine: ServingEngine;
  model: ServedModel;
  /** the base variant's id (the directory name unless --served-model-name) */
  servedModelName: string;
  /**
   * every id /v1/models lists, the base first. A Serving is never changed in place:
   * publishing or promoting a version puts a new one in the slot (server/fine-tuning/
   * versions.ts), so a request that resolved its variant keeps it to the end.
   */
  variants: ReadonlyMap<string, ServedVariant>;
  /** the base id on its own weights (what it serves again when a promotion is rolled back) */
  baseVariant: ServedVariant;
  /** the version the base id serves now, or null for the base weights */
  promoted: string | null;
}

export type SlotState =
  | { status: "loading" }
  | { status: "ready"; serving: Serving }
  | { status: "failed"; message: string };

/** Holds the model once it is ready; the app is usable (health, errors) before that. */
export class ServingSlot {
  #state: SlotState = { status: "loading" };

  get state(): SlotState {
    return this.#state;
  }

  ready(serving: Serving): void {
    this.#state = { status: "ready", serving };
  }

  failed(message: string): void {
    this.#state = { status: "failed", message };
  }
}
