#!/usr/bin/env node
// The `hybridchat` command: dispatches to a subcommand; turns failures into one line
// that says what to do, never a stack trace for a user mistake.
import { readFileSync } from "node:fs";
import { UsageError } from "./errors.js";
import { HELPS } from "./help-index.js";
import { didYouMean, helpFlags } from "./suggest.js";

const COMMANDS = Object.keys(HELPS).filter((k) => k && !k.includes(" "));

/** The command a help text exists for: "train sft" for `train sft …`, else the first word. */
function commandOf(argv: readonly string[]): string {
  const two = argv.slice(0, 2).join(" ");
  return HELPS[two] ? two : (argv[0] ?? "");
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    // loaded on demand: `--help` should not pay for fastify and the engine
    case "serve":
      return (await import("./serve.js")).serveCommand(rest);
    case "init":
      return (await import("./init.js")).initCommand(rest);
    case "quantize":
      return (await import("./quantize.js")).quantizeCommand(rest);
    case "convert":
      return (await import("./convert.js")).convertCommand(rest);
    case "chat":
      return (await import("./chat.js")).chatCommand(rest);
    case "keys":
      return (await import("./keys.js")).keysCommand(rest);
    case "train":
      return (await import("./train/sft.js")).trainCommand(rest);
    case "pipeline":
      return (await import("./pipeline.js")).pipelineCommand(rest);
    case undefined:
    case "help":
    case "-h":
    case "--help": {
      // `hybridchat help train sft` is `hybridchat train sft --help`
      const topic = rest.join(" ");
      if (topic && !HELPS[topic]) throw new UsageError(`no help for "${topic}"${didYouMean(topic, Object.keys(HELPS))}; commands: ${COMMANDS.join(", ")}`, "");
      process.stdout.write(HELPS[topic]!);
      return;
    }
    case "-v":
    case "--version":
      process.stdout.write(`${version()}\n`);
      return;
    default:
      throw new UsageError(`unknown command "${command}"${didYouMean(command, COMMANDS)}; commands: ${COMMANDS.join(", ")}`, "");
  }
}

/** node:util parseArgs' errors, shorter, with the nearest flag the command's help lists. */
function parseArgsMessage(err: Error & { code?: string }, cmd: string): string {
  const flag = /'(-[^']*)'/.exec(err.message)?.[1];
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && flag) return `unknown option ${flag}${didYouMean(flag, helpFlags(HELPS[cmd] ?? ""))}`;
  return err.message;
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const err = e as Error & { code?: string };
  if (e instanceof UsageError || err.code?.startsWith("ERR_PARSE_ARGS")) {
    const cmd = e instanceof UsageError ? e.command : commandOf(process.argv.slice(2));
    process.stderr.write(`hybridchat: ${e instanceof UsageError ? err.message : parseArgsMessage(err, cmd)}\nRun \`hybridchat ${cmd ? cmd + " " : ""}--help\` for usage.\n`);
    process.exit(2);
  }
  // load and native errors carry a stable code and a message that names the file
  process.stderr.write(`hybridchat: ${err.message ?? String(e)}${err.code ? ` [${err.code}]` : ""}\n`);
  if (process.env.HYBRIDCHAT_DEBUG) process.stderr.write(`${err.stack ?? ""}\n`);
  process.exit(1);
});
