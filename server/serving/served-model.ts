// Adapts the engine's LoadedModel + Engine to what the routes need (server/serving/serving.ts).
import { createHash } from "node:crypto";
import type { Engine } from "../../engine/engine.js";
import type { LoadedModel } from "../../engine/model.js";
import type { ChatMessage } from "../../engine/types.js";
import { Grammars, type GrammarSpec } from "../../engine/grammar/grammars.js";
import { nowSeconds } from "../http/openai-shapes.js";
import type { Serving, ServedModel, ServedVariant } from "./serving.js";
import { TokenizerThread } from "../../engine/tokenizer-thread.js";
import { NORMALIZER_SLACK, PretokenizedPrompts } from "./prompt-tokens.js";

export function servedModel(model: LoadedModel, engine: Engine, thread: TokenizerThread): ServedModel {
  // the engine may hold less than the model's positions (a small KV pool)
  const maxContext = Math.min(model.maxContext, engine.maxContext);
  const ready = new PretokenizedPrompts();
  const render = (messages: readonly ChatMessage[], tools: readonly object[] | null, addGenerationPrompt: boolean) =>
    model.chatTemplate.render(messages, addGenerationPrompt, tools);
  // built on first use: reading the vocabulary into xgrammar costs a moment per model
  let grammars: Grammars | null = null;
  return {
    id: model.id,
    maxContext,
    untrained: model.untrained,
    vocabSize: model.config.vocabSize,
    device: model.native.device(),
    stepCounts: () => model.native.stepCounts(),
    promptCharLimit: maxContext * model.tokenizer.maxTokenChars * NORMALIZER_SLACK,
    chatTemplate: model.chatTemplate,
    encodeChat: (messages: readonly ChatMessage[], tools?: readonly object[] | null, addGenerationPrompt = true) => {
      const text = render(messages, tools ?? null, addGenerationPrompt);
      // engine/chat-template.ts's encodeChat, on the text already rendered: it holds its specials
      return ready.get("chat", text) ?? model.tokenizer.encode(text, false);
    },
    encodeContinuation: (text: string) => model.tokenizer.encode(text, false),
    encodePrompt: (text: string) => ready.get("prompt", text) ?? model.tokenizer.encode(text, true),
    pretokenizeChat: async (messages: readonly ChatMessage[], tools?: readonly object[] | null) => {
      const text = render(messages, tools ?? null, true);
      return ready.hold("chat", text, await thread.encode(text, false));
    },
    pretokenizePrompt: async (text: string) => ready.hold("prompt", text, await thread.encode(text, true)),
    decode: (ids: readonly number[], skipSpecial = true) => model.tokenizer.decode(ids, skipSpecial),
    tokenText: (id: number) => model.tokenizer.tokenText(id),
    grammar: async (spec: GrammarSpec) => {
      grammars ??= new Grammars(model.tokenizer, model.config.vocabSize);
      const g = grammars;
      await g.compiled(spec);
      return () => g.constraint(spec);
    },
  };
}

/** A LoRA adapter loaded on the native model, served under its own model id. */
export interface AdapterVariant {
  /** the id clients send as `model` (also the native adapter's name) */
  id: string;
  /** where it was loaded from, for the fingerprint */
  dir: string;
  /** unix seconds for /v1/models; default: now */
  created?: number;
}

const fingerprint = (...parts: string[]): string =>
  `fp_${createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 10)}`;

/** The variant of an adapter loaded on the model under the base `name`. */
export function adapterVariant(name: string, modelDir: string, a: AdapterVariant, created: number): ServedVariant {
  return { id: a.id, adapter: a.id, created, fingerprint: fingerprint(name, modelDir, a.id, a.dir) };
}

/** `thread`: where long prompts are tokenized (one per loaded model; its owner closes it) */
export function servingFor(
  engine: Engine,
  model: LoadedModel,
  thread: TokenizerThread,
  servedModelName?: string,
  adapters: readonly AdapterVariant[] = [],
): Serving {
  const name = servedModelName ?? model.id;
  const created = nowSeconds();
  const variants = new Map<string, ServedVariant>();
  const baseVariant: ServedVariant = { id: name, adapter: null, created, fingerprint: fingerprint(name, model.dir) };
  variants.set(name, baseVariant);
  for (const a of adapters) {
    if (variants.has(a.id)) throw new Error(`adapter id "${a.id}" is already served (ids must differ from the base model's and each other)`);
    variants.set(a.id, adapterVariant(name, model.dir, a, a.created ?? created));
  }
  return { engine, model: servedModel(model, engine, thread), servedModelName: name, variants, baseVariant, promoted: null };
}
