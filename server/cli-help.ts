// Help texts, kept apart from the commands so `--help` loads nothing heavy.
import { availableParallelism } from "node:os";
import { presetNames } from "../engine/presets.js";

export const HELP = `Usage: hybridchat <command> [options]

Commands:
  serve   serve a model with an OpenAI-compatible API (default: a built-in untrained tiny model)
  init    write a randomly initialised Hugging Face checkpoint

Run \`hybridchat <command> --help\` for a command's options.

Examples:
  hybridchat serve --model ../shared/models/stories260K
  hybridchat init --preset tiny --out /tmp/tiny
`;

export const SERVE_HELP = `Usage: hybridchat serve [options]

Serves a Hugging Face Llama-family checkpoint with an OpenAI-compatible API
(/v1/chat/completions, /v1/completions, /v1/models, /health), keeps every completion
(OpenAI's "store"; GET /v1/chat/completions/{id}) and collects feedback (/v1/feedback).

Options:
  --model DIR               checkpoint directory (config.json, *.safetensors, tokenizer.json).
                            Without it, a built-in tiny model with random (UNTRAINED) weights is served.
  --host HOST               address to bind (default 127.0.0.1)
  --port N                  port (default 8000; 0 picks a free one)
  --served-model-name NAME  the id clients send as "model" (default: the directory's name)
  --threads N               compute threads (default: all ${availableParallelism()} cores)
  --max-batch N             most sequences decoded together (default 8)
  --max-queue N             most requests waiting before 429 (default 64)
  --max-context N           cap on prompt + completion tokens (default: the model's)
  --max-body-bytes N        largest request body before 413 (default 8388608)
  --data-dir DIR            where the server keeps its state: hybridchat.sqlite with the stored
                            completions and feedback (default ./hybridchat-data)
  --no-store                keep no completions (a request's "store": false does this per request);
                            /v1/feedback and GET /v1/chat/completions then answer 404 store_disabled
  --log-level LEVEL         fatal|error|warn|info|debug|trace|silent (default info)
  -h, --help                this help

Examples:
  hybridchat serve
  hybridchat serve --model ../shared/models/stories260K --port 8080
  hybridchat serve --model ./my-llama --served-model-name my-llama --threads 4 --max-batch 16
`;

export const INIT_HELP = `Usage: hybridchat init (--config FILE.json | --preset NAME) --out DIR [options]

Writes a randomly initialised Hugging Face checkpoint directory (config.json,
model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json)
that \`hybridchat serve --model DIR\` loads. The weights are random: for benchmarks and tests.

Options:
  --config FILE.json  an HF config.json of any supported Llama-family model
  --preset NAME       a named shape: ${presetNames().join(", ")}
  --out DIR           directory to write (must be empty or absent, unless --force)
  --seed S            random seed (default 0); the same seed writes the same weights
  --dtype T           f32 | bf16 | f16 (default f32)
  --force             overwrite a checkpoint already in DIR
  -h, --help          this help

Examples:
  hybridchat init --preset tiny --out /tmp/tiny
  hybridchat init --config ./llama-110m.json --out ./llama-110m --dtype bf16 --seed 7
`;

