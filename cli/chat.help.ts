// `hybridchat chat --help`, beside the command (chat.ts); apart from it so `--help` loads nothing heavy.
import { CHAT_COMMANDS } from "../clients/chat-commands.js";

export const CHAT_HELP = `Usage: hybridchat chat [options]

A terminal chat with a running hybridchat server: answers stream in, the conversation is
kept, and what you think of the answers is stored as feedback the server can train on.

Options:
  --url URL            the server (default http://127.0.0.1:8000)
  --model ID           the model id to talk to (default: the first one /v1/models lists)
  --api-key KEY        the key, when the server requires one (default: $HYBRIDCHAT_API_KEY)
  --system TEXT        a system message to start the conversation with
  --max-tokens N       longest answer (default 256)
  --temperature T      sampling temperature (default 0.8)
  -h, --help           this help

${CHAT_COMMANDS}
Examples:
  hybridchat chat
  hybridchat chat --url http://127.0.0.1:8080 --model ft:stories260K:names:ftjob-abc
  HYBRIDCHAT_API_KEY=my-user-key hybridchat chat --url http://gpu-box:8000
`;
