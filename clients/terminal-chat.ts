// `hybridchat chat`: a terminal chat against a running server, through HybridchatClient —
// streamed answers, multi-turn history, and the feedback commands that teach the model.
import { createInterface } from "node:readline";
import { BadRequestError, type default as OpenAI } from "openai";
import { HybridchatClient } from "./client.js";
import { CHAT_COMMANDS } from "./chat-commands.js";


export interface ChatOptions {
  url: string;
  /** sent as a Bearer token; needed when the server was started with API keys */
  apiKey?: string;
  model?: string;
  system?: string;
  maxTokens: number;
  temperature: number;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

type Message = OpenAI.ChatCompletionMessageParam;

/** --model names nothing the server serves; `available` is what /v1/models lists. */
export class UnknownModelError extends Error {
  constructor(
    readonly model: string,
    readonly available: readonly string[],
  ) {
    super(`the server serves no model "${model}"`);
    this.name = "UnknownModelError";
  }
}

export async function runChat(o: ChatOptions): Promise<void> {
  const client = new HybridchatClient({ baseURL: `${o.url.replace(/\/+$/, "")}/v1`, apiKey: o.apiKey, maxRetries: 0 });
  const out = (s: string): void => void o.output.write(s);
  // asked first: a wrong URL, key or model is reported before the user types anything
  const served = (await client.models.list()).data.map((m) => m.id);
  const model = o.model ?? served[0];
  if (!model) throw new Error(`${o.url} serves no model`);
  if (!served.includes(model)) throw new UnknownModelError(model, served);
  out(`hybridchat chat — ${model} at ${o.url}. /help for commands.\n`);

  const history: Message[] = o.system ? [{ role: "system", content: o.system }] : [];
  /** the completion behind the last assistant turn, and which of its choices it is */
  let last: { id: string; index: number } | null = null;
  const rl = createInterface({ input: o.input, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  const ask = async (prompt: string): Promise<string | null> => {
    out(prompt);
    const r = await lines.next();
    return r.done ? null : (r.value as string);
  };

  const lastUserTurn = (): boolean => {
    if (history.at(-1)?.role === "assistant") history.pop();
    return history.at(-1)?.role === "user";
  };
  const answer = async (): Promise<void> => {
    const stream = await client.chat.completions.create({ model, messages: history, max_tokens: o.maxTokens, temperature: o.temperature, stream: true });
    let text = "";
    let id = "";
    for await (const chunk of stream) {
      id = chunk.id;
      const d = chunk.choices[0]?.delta.content ?? "";
      text += d;
      out(d);
    }
    out("\n");
    history.push({ role: "assistant", content: text });
    last = { id, index: 0 };
  };

  for (;;) {
    const line = await ask("> ");
    if (line === null) break;
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const arg = line.trim().slice((cmd ?? "").length).trim();
    try {
      switch (cmd) {
        case "":
          continue;
        case "/quit":
        case "/exit":
          rl.close();
          return;
        case "/help":
          out(CHAT_COMMANDS);
          continue;
        case "/reset":
          history.splice(o.system ? 1 : 0);
          last = null;
          out("(conversation cleared)\n");
          continue;
        case "/good":
        case "/bad": {
          if (!last) {
            out("(nothing to rate yet)\n");
            continue;
          }
          const fb = await client.feedback.rate(last.id, cmd === "/good" ? 1 : -1, { comment: rest.length ? arg : undefined, choiceIndex: last.index });
          out(`(rated ${cmd === "/good" ? "+1" : "-1"}: ${fb.id})\n`);
          continue;
        }
        case "/correct": {
          if (!last || !arg) {
            out(last ? "(usage: /correct a better answer)\n" : "(nothing to correct yet)\n");
            continue;
          }
          const fb = await client.feedback.correct(last.id, arg, { choiceIndex: last.index });
          history[history.length - 1] = { role: "assistant", content: arg };
          out(`(correction stored: ${fb.id})\n`);
          continue;
        }
        case "/retry":
          if (!lastUserTurn()) {
            out("(say something first)\n");
            continue;
          }
          await answer();
          continue;
        case "/compare": {
          if (!lastUserTurn()) {
            out("(say something first)\n");
            continue;
          }
          const r = await client.chat.completions.create({ model, messages: history, max_tokens: o.maxTokens, temperature: Math.max(o.temperature, 0.7), n: 2 });
          const [a, b] = r.choices.map((c) => c.message.content ?? "");
          out(`[1] ${a}\n[2] ${b}\n`);
          let pick: string | null = null;
          while (pick !== "1" && pick !== "2") {
            pick = await ask("Which is better? [1/2] ");
            if (pick === null) return;
            pick = pick.trim();
          }
          const chosen = Number(pick) - 1;
          const fb = await client.feedback.prefer({ completionId: r.id, chosenIndex: chosen, rejectedIndex: 1 - chosen });
          history.push({ role: "assistant", content: chosen === 0 ? a! : b! });
          last = { id: r.id, index: chosen };
          out(`(preference stored: ${fb.id})\n`);
          continue;
        }
        default:
          if (cmd!.startsWith("/")) {
            out(`(unknown command ${cmd}; /help lists them)\n`);
            continue;
          }
          history.push({ role: "user", content: line });
          await answer();
      }
    } catch (e) {
      // a failed call is reported and the conversation goes on
      const full = e instanceof BadRequestError && e.code === "context_length_exceeded";
      out(`(error: ${(e as Error).message}${full ? " /reset starts a new conversation." : ""})\n`);
      if (history.at(-1)?.role === "user" && !cmd!.startsWith("/")) history.pop();
    }
  }
  rl.close();
}
