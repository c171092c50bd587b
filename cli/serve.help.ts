// `hybridchat serve --help`, beside the command (serve.ts); apart from it so `--help` loads nothing heavy.
import { RLHF_HELP } from "./serve-rlhf-flags.js";
import { availableParallelism } from "node:os";

export const SERVE_HELP = `Usage: hybridchat serve [options]

Serves a Hugging Face Llama-family checkpoint with an OpenAI-compatible API
(/v1/chat/completions, /v1/completions, /v1/models, /health), keeps every completion
(OpenAI's "store"; GET /v1/chat/completions/{id}) and collects feedback (/v1/feedback).

Options:
  --model DIR               checkpoint directory (config.json, *.safetensors, tokenizer.json),
                            or a Llama-family FILE.gguf (F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K tensors).
                            Without it, the pretrained TinyStories 260K Llama the package ships
                            ($HYBRIDCHAT_DEFAULT_MODEL, else ../shared/models/stories260K, else
                            models/stories260K in the package); only where none is found, a
                            built-in tiny model with random (UNTRAINED) weights.
  --host HOST               address to bind (default 127.0.0.1). Any other address needs API keys:
                            without them every route (files, jobs, promote) is open to whoever connects
  --api-key KEY:ROLE        require "Authorization: Bearer KEY"; ROLE is user (chat, completions,
                            models, feedback, stored completions) or admin (everything, incl. files,
                            fine-tuning jobs, promote, /metrics); repeatable. Also read from
                            HYBRIDCHAT_API_KEYS="key1:admin,key2:user". /health and the web page stay open.
                            Keys made by \`hybridchat keys create\` (in --data-dir's database) count too,
                            from the next request on; once any key exists, every request needs one
  --port N                  port (default 8000; 0 picks a free one)
  --served-model-name NAME  the id clients send as "model" (default: the directory's name)
  --adapter NAME=DIR        also serve a PEFT LoRA adapter (e.g. from \`hybridchat train sft\`) as
                            model id NAME, on the same base weights; repeatable
  --threads N               compute threads (default: all ${availableParallelism()} cores)
  --tensor-parallel N       split every layer over N ranks (Megatron layout: attention by heads,
                            MLP by width): thread ranks sharing the threads on the CPU; with
                            --device cuda, rank r on CUDA device r (NCCL between them); N must
                            divide the model's key/value heads and MLP width (default 1)
  --device D                where the model runs: cpu (default), cuda (CUDA device 0: weights, KV
                            cache and activations resident there; refused at start-up without a
                            device, naming the library paths searched) or auto (cuda when a device
                            is present, else cpu)
  --matmul-precision P      how activations meet bf16 weights, as PyTorch names it: auto (default:
                            medium for bf16 weights on the CPU with one rank, else highest), highest
                            (fp32), high (each split into two bf16, ≈ 16 bits) or medium (rounded
                            to one bf16, llama.cpp's way: faster prefill, ≈ 3 significant digits);
                            high and medium need AVX512-BF16 (else highest), cpu and one rank only
  --max-batch N             most sequences decoded together (default 8)
  --max-queue N             most requests waiting before 429 (default 256: n = 128 fits twice)
  --max-context N           cap on prompt + completion tokens (default: the model's)
  --kv-cache-memory M       KV cache pool: bytes (512MiB, 2GB) or a fraction of free memory
                            (0.5); default 8 contexts, at most 1 GiB (at least one context)
  --kv-dtype T              the KV cache's element type (llama.cpp's -ctk/-ctv): auto (default),
                            f32, bf16 or f16 (the CPU only). 16-bit types hold half the bytes a
                            token (rounded on write, read back in fp32). auto: bf16 on cuda; on
                            the CPU bf16 for a bf16 model, f16 for f16 and q8_0/q4_0/q4_k ones,
                            f32 for an f32 model
  --cuda-graphs on|off      cuda: replay each decode step as a CUDA graph captured once per
                            batch bucket (1, 2, 4, ..., 64) instead of launching every kernel
                            (default on; tensor parallel runs without)
  --max-body-bytes N        largest request body before 413 (default 8388608)
  --max-file-bytes N        largest uploaded training file (POST /v1/files) before 413 (default
                            536870912, 512 MiB); uploads stream to disk, never held in memory
  --max-file-lines N        most lines an uploaded file may have (default 2000000)
  --max-line-bytes N        longest line of an uploaded file, in bytes (default 4194304)
  --request-timeout S       a request's headers and body must arrive within S seconds, with no
                            silence over 15 s while a body arrives (408 otherwise; default 300)
  --allowed-hosts H1,H2      host names clients may reach the server by, besides IP addresses and
                            localhost (e.g. the name of a reverse proxy; "*" any): other Host
                            headers get 403, so a page of another site cannot reach it by DNS
                            rebinding (default: none; on 0.0.0.0 without it, any)
  --key-rate-limit N        requests each API key may start per minute (429 with Retry-After above;
                            default unlimited; a key's own --requests-per-minute replaces it)
  --key-token-limit N       tokens that may be generated for each API key per minute, counted as
                            they are generated (chat and completions get 429 with Retry-After while
                            over; default unlimited; a key's own --tokens-per-minute replaces it)
  --max-connections-per-client N
                            connections one client address may hold open (429 above; default 128)
  --data-dir DIR            where the server keeps its state: hybridchat.sqlite with the stored
                            completions and feedback (default ./hybridchat-data)
  --no-store                keep no completions (a request's "store": false does this per request);
                            /v1/feedback and GET /v1/chat/completions then answer 404 store_disabled
  --log-level LEVEL         fatal|error|warn|info|debug|trace|silent (default info)
${RLHF_HELP}  -h, --help                this help

Examples:
  hybridchat serve
  hybridchat serve --model ../shared/models/stories260K --port 8080
  hybridchat serve --model ./my-llama --served-model-name my-llama --threads 4 --max-batch 16
  hybridchat serve --model ./llama-110m-q4_k.gguf
  hybridchat serve --model ../shared/models/stories260K --adapter storyteller=./out/sft
  hybridchat serve --model ../shared/models/stories260K --threads 2 --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --rlhf-after 50 --rlhf-promote
  hybridchat serve --model ../shared/models/stories260K --host 0.0.0.0 --api-key "$ADMIN_KEY:admin" --api-key "$USER_KEY:user"
  HYBRIDCHAT_API_KEYS="$ADMIN_KEY:admin" hybridchat serve --host 0.0.0.0 --data-dir /var/lib/hybridchat
`;
