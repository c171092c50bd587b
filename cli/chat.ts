// `hybridchat chat`: options → clients/terminal-chat.ts.
import { parseArgs } from "node:util";
import { APIConnectionError, AuthenticationError } from "openai";
import { runChat, UnknownModelError } from "../clients/terminal-chat.js";
import { intOption, UsageError } from "./errors.js";
import { CHAT_HELP } from "./chat.help.js";
import { didYouMean } from "./suggest.js";

export async function chatCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      url: { type: "string", default: "http://127.0.0.1:8000" },
      model: { type: "string" },
      "api-key": { type: "string" },
      system: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(CHAT_HELP);
    return;
  }
  const c = "chat";
  if (!/^https?:\/\/[^/]+/.test(values.url!)) throw new UsageError(`--url must be an http(s) URL such as http://127.0.0.1:8000, got "${values.url}"`, c);
  const temperature = values.temperature === undefined ? 0.8 : Number(values.temperature);
  if (!Number.isFinite(temperature) || temperature < 0 || temperature > 2) throw new UsageError(`--temperature must be a number in [0, 2], got "${values.temperature}"`, c);
  const apiKey = values["api-key"] ?? process.env.HYBRIDCHAT_API_KEY;
  try {
    await runChat({
      url: values.url!,
      model: values.model,
      apiKey,
      system: values.system,
      maxTokens: intOption(values["max-tokens"], "max-tokens", c, 1, 1_000_000) ?? 256,
      temperature,
      input: process.stdin,
      output: process.stdout,
    });
  } catch (e) {
    // the openai client's error classes (their `name` is plain "Error")
    if (e instanceof APIConnectionError) throw new UsageError(`cannot reach ${values.url}: is \`hybridchat serve\` running there?`, c);
    if (e instanceof AuthenticationError)
      throw new UsageError(
        apiKey
          ? `${values.url} refused the API key (${e.message}); check it against the server's --api-key / HYBRIDCHAT_API_KEYS`
          : `${values.url} wants an API key: pass --api-key KEY or set HYBRIDCHAT_API_KEY (${e.message})`,
        c,
      );
    if (e instanceof UnknownModelError)
      throw new UsageError(`${values.url} serves no model "${e.model}"${didYouMean(e.model, e.available)}; pass --model with one of: ${e.available.join(", ")}`, c);
    throw e;
  }
}
