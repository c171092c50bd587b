// Adapts the engine's LoadedModel + Engine to what the routes need (server/serving.ts).
import { createHash } from "node:crypto";
import type { Engine } from "../engine/engine.js";
import type { LoadedModel } from "../engine/model.js";
import { encodeChat } from "../engine/chat-template.js";
import type { ChatMessage } from "../engine/types.js";
import { nowSeconds } from "./openai-shapes.js";
import type { Serving, ServedModel } from "./serving.js";

export function servedModel(model: LoadedModel, engine: Engine): ServedModel {
  return {
    id: model.id,
    // the engine may hold less than the model's positions (a small KV pool)
    maxContext: Math.min(model.maxContext, engine.maxContext),
    untrained: model.untrained,
    vocabSize: model.config.vocabSize,
    encodeChat: (messages: readonly ChatMessage[]) => encodeChat(model, messages, true),
    encodePrompt: (text: string) => model.tokenizer.encode(text, true),
    decode: (ids: readonly number[]) => model.tokenizer.decode(ids, true),
  };
}

export function servingFor(engine: Engine, model: LoadedModel, servedModelName?: string): Serving {
  const name = servedModelName ?? model.id;
  return {
    engine,
    model: servedModel(model, engine),
    servedModelName: name,
    createdAt: nowSeconds(),
    fingerprint: `fp_${createHash("sha256").update(`${name}\0${model.dir}`).digest("hex").slice(0, 10)}`,
  };
}
