// `hybridchat chat`: options → clients/terminal-chat.ts.
import { parseArgs } from "node:util";
import { runChat } from "../clients/terminal-chat.js";
import { intOption, UsageError } from "./cli-errors.js";
import { CHAT_HELP } from "./cli-help.js";

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
  try {
    await runChat({
      url: values.url!,
      model: values.model,
      apiKey: values["api-key"] ?? process.env.HYBRIDCHAT_API_KEY,
      system: values.system,
      maxTokens: intOption(values["max-tokens"], "max-tokens", c, 1, 1_000_000) ?? 256,
      temperature,
      input: process.stdin,
      output: process.stdout,
    });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    if (err.name === "APIConnectionError") throw new UsageError(`cannot reach ${values.url}: is \`hybridchat serve\` running there?`, c);
    if (err.name === "AuthenticationError")
      throw new UsageError(`${values.url} wants an API key: pass --api-key KEY or set HYBRIDCHAT_API_KEY (${err.message})`, c);
    throw e;
  }
}
