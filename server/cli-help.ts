// Help texts, kept apart from the commands so `--help` loads nothing heavy.
import { availableParallelism } from "node:os";
import { presetNames } from "../engine/presets.js";
import { CHAT_COMMANDS } from "../clients/chat-commands.js";

export const HELP = `Usage: hybridchat <command> [options]

Commands:
  serve   serve a model with an OpenAI-compatible API (default: a built-in untrained tiny model)
  init    write a randomly initialised Hugging Face checkpoint
  train   fine-tune a model (train sft: supervised fine-tuning from JSONL)
  chat    chat with a running server in the terminal, and rate or compare its answers

Run \`hybridchat <command> --help\` for a command's options.

Examples:
  hybridchat serve --model ../shared/models/stories260K
  hybridchat init --preset tiny --out /tmp/tiny
  hybridchat train sft --model ../shared/models/stories260K --data train.jsonl --out ./my-adapter
  hybridchat chat --url http://127.0.0.1:8000
`;

export const CHAT_HELP = `Usage: hybridchat chat [options]

A terminal chat with a running hybridchat server: answers stream in, the conversation is
kept, and what you think of the answers is stored as feedback the server can train on.

Options:
  --url URL            the server (default http://127.0.0.1:8000)
  --model ID           the model id to talk to (default: the first one /v1/models lists)
  --system TEXT        a system message to start the conversation with
  --max-tokens N       longest answer (default 256)
  --temperature T      sampling temperature (default 0.8)
  -h, --help           this help

${CHAT_COMMANDS}
Examples:
  hybridchat chat
  hybridchat chat --url http://127.0.0.1:8080 --model ft:stories260K:names:ftjob-abc
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
  --adapter NAME=DIR        also serve a PEFT LoRA adapter (e.g. from \`hybridchat train sft\`) as
                            model id NAME, on the same base weights; repeatable
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
  hybridchat serve --model ../shared/models/stories260K --adapter storyteller=./out/sft
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


export const TRAIN_HELP = `Usage: hybridchat train <method> [options]

Methods:
  sft     supervised fine-tuning on chat or prompt/completion examples (JSONL)

Run \`hybridchat train sft --help\` for its options.
`;

export const TRAIN_SFT_HELP = `Usage: hybridchat train sft --model DIR --data FILE.jsonl --out DIR [options]

Fine-tunes a checkpoint on examples in OpenAI's fine-tuning formats, one JSON object a line:
  {"messages":[{"role":"system","content":"…"},{"role":"user","content":"…"},{"role":"assistant","content":"…"}]}
      the chat template is applied; the loss covers assistant messages only
      (an assistant message with "weight": 0 is context, not learned)
  {"prompt":"…","completion":"…"}
      the texts are joined; the loss covers the completion (and a final end-of-sequence token)
Every bad line is reported with its number before anything is trained.

Writes into --out: a LoRA adapter in Hugging Face PEFT's layout (adapter_config.json,
adapter_model.safetensors), or with --lora-rank 0 a full Hugging Face checkpoint; the log
train_log.jsonl (one line per step: loss, lr, grad_norm, tokens/s); and checkpoint-<step>/
after every epoch, which --resume continues from.

Options:
  --model DIR            checkpoint directory to fine-tune (required)
  --data FILE.jsonl      training examples (required)
  --out DIR              output directory (required; must not hold another run unless --resume)
  --validation FILE      examples whose loss is reported after every epoch
  --lora-rank R          LoRA rank; 0 = full fine-tuning of every weight (default 8)
  --lora-alpha A         LoRA scale numerator: updates are scaled by A/R (default 2 × R)
  --lora-dropout P       dropout on the LoRA input while training (default 0)
  --target-modules LIST  layers LoRA adapts: q,k,v,o,gate,up,down or all (default all)
  --epochs N|auto        passes over the data (default auto: 3, more for small data sets so
                         at least ~100 examples are seen, at most 25; fewer for large ones)
  --lr X                 peak learning rate (default 2e-3 with LoRA, 1e-4 for full fine-tuning)
  --schedule S           constant | linear | cosine learning-rate decay (default linear)
  --warmup-steps N       linear warm-up steps (default 3 % of all steps)
  --batch-size B|auto    sequences per optimizer step (default auto: ~0.2 % of the examples, at least 1)
  --max-length N         longer examples are truncated (default: the model's context)
  --seed S               data order and LoRA initialisation (default 0)
  --resume               continue from the last checkpoint in --out (same options and data)
  --threads N            compute threads (default: all ${availableParallelism()} cores)
  -h, --help             this help

Examples:
  hybridchat train sft --model ../shared/models/stories260K --data names.jsonl --out ./names-adapter
  hybridchat train sft --model ./my-llama --data chat.jsonl --validation val.jsonl --out ./chat-lora \\
      --lora-rank 16 --target-modules q,v --epochs 3 --lr 1e-3
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./my-llama-sft --lora-rank 0
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-lora --resume
`;
