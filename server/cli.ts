#!/usr/bin/env node
// The `hybridchat` command: dispatches to a subcommand; turns failures into one line
// that says what to do, never a stack trace for a user mistake.
import { readFileSync } from "node:fs";
import { UsageError } from "./cli-errors.js";
import { CHAT_HELP, HELP, INIT_HELP, PIPELINE_HELP, SERVE_HELP, TRAIN_HELP } from "./cli-help.js";

const HELPS: Record<string, string> = { serve: SERVE_HELP, init: INIT_HELP, train: TRAIN_HELP, chat: CHAT_HELP, pipeline: PIPELINE_HELP };

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    // loaded on demand: `--help` should not pay for fastify and the engine
    case "serve":
      return (await import("./cli-serve.js")).serveCommand(rest);
    case "init":
      return (await import("./cli-init.js")).initCommand(rest);
    case "chat":
      return (await import("./cli-chat.js")).chatCommand(rest);
    case "train":
      return (await import("./cli-train.js")).trainCommand(rest);
    case "pipeline":
      return (await import("./cli-pipeline.js")).pipelineCommand(rest);
    case undefined:
    case "help":
    case "-h":
    case "--help":
      process.stdout.write(rest[0] && HELPS[rest[0]] ? HELPS[rest[0]] : HELP);
      return;
    case "-v":
    case "--version":
      process.stdout.write(`${version()}\n`);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`, "");
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const err = e as Error & { code?: string };
  if (e instanceof UsageError || err.code?.startsWith("ERR_PARSE_ARGS")) {
    const cmd = e instanceof UsageError ? e.command : process.argv[2];
    process.stderr.write(`hybridchat: ${err.message}\nRun \`hybridchat ${cmd ? cmd + " " : ""}--help\` for usage.\n`);
    process.exit(2);
  }
  // load and native errors carry a stable code and a message that names the file
  process.stderr.write(`hybridchat: ${err.message ?? String(e)}${err.code ? ` [${err.code}]` : ""}\n`);
  if (process.env.HYBRIDCHAT_DEBUG) process.stderr.write(`${err.stack ?? ""}\n`);
  process.exit(1);
});
