// Keeps a prompt's size from stalling the server. Runs after validation, before the
// completion routes: a prompt longer (in characters) than any prompt that fits the
// context is refused at once, without tokenizing it; a long one that may fit is tokenized
// on the tokenizer thread, and the route finds the ids ready (server/serving/prompt-tokens.ts).
// Short prompts (most chats) go straight through and are tokenized in place.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { errors } from "./errors.js";
import { toChatMessage } from "../serving/chat-messages.js";
import { SYNC_TOKENIZE_CHARS } from "../serving/prompt-tokens.js";
import type { ServedModel, ServingSlot } from "../serving/serving.js";
import type { ChatMessageInput } from "./schemas/chat.js";
import type { PromptInput } from "./schemas/completions.js";

function contentChars(m: ChatMessageInput): number {
  if (typeof m.content === "string") return m.content.length;
  if (!Array.isArray(m.content)) return 0;
  let n = 0;
  for (const p of m.content) n += p.text.length;
  return n;
}

/** Refuses without tokenizing: `chars` of prompt text cannot fit in maxContext tokens. */
function checkChars(model: ServedModel, chars: number, param: string): void {
  if (chars > model.promptCharLimit) throw errors.promptTooLong(model.maxContext, chars, model.promptCharLimit, param);
}

async function guardChat(model: ServedModel, body: { messages: ChatMessageInput[] }): Promise<(() => void) | null> {
  let chars = 0;
  for (const m of body.messages) chars += contentChars(m);
  checkChars(model, chars, "messages");
  if (chars < SYNC_TOKENIZE_CHARS) return null;
  return model.pretokenizeChat(body.messages.map(toChatMessage));
}

async function guardCompletion(model: ServedModel, body: { prompt: PromptInput }): Promise<(() => void) | null> {
  const texts = typeof body.prompt === "string" ? [body.prompt] : body.prompt.filter((p): p is string => typeof p === "string");
  texts.forEach((t, i) => checkChars(model, t.length, texts.length > 1 ? `prompt[${i}]` : "prompt"));
  const releases = await Promise.all(texts.filter((t) => t.length >= SYNC_TOKENIZE_CHARS).map((t) => model.pretokenizePrompt(t)));
  return releases.length === 0 ? null : () => releases.forEach((r) => r());
}

export function installPromptGuard(app: FastifyInstance, slot: ServingSlot): void {
  const releases = new WeakMap<FastifyRequest, () => void>();
  app.addHook("preHandler", async (request) => {
    const route = request.routeOptions.url;
    if (request.method !== "POST" || (route !== "/v1/chat/completions" && route !== "/v1/completions")) return;
    // not loaded yet: the route answers 503
    if (slot.state.status !== "ready") return;
    const model = slot.state.serving.model;
    const release =
      route === "/v1/chat/completions"
        ? await guardChat(model, request.body as { messages: ChatMessageInput[] })
        : await guardCompletion(model, request.body as { prompt: PromptInput });
    if (release) releases.set(request, release);
  });
  // the route has tokenized (or failed) by the time the response is sent
  app.addHook("onResponse", async (request) => {
    releases.get(request)?.();
    releases.delete(request);
  });
}
