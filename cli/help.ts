// Help texts, kept apart from the commands so `--help` loads nothing heavy.
import { RLHF_HELP } from "./serve-rlhf-flags.js";
import { availableParallelism } from "node:os";
import { presetNames } from "../engine/presets.js";
import { CHAT_COMMANDS } from "../clients/chat-commands.js";

export const HELP = `Usage: hybridchat <command> [options]

Commands:
  serve   serve a model with an OpenAI-compatible API (default: a built-in untrained tiny model)
  init    write a randomly initialised Hugging Face checkpoint
  train   fine-tune a model (train sft, rm, dpo, ppo: SFT from JSONL, reward model, DPO, RLHF with PPO)
  pipeline  the three RLHF steps in one run: SFT → reward model → PPO, with training curves
  chat    chat with a running server in the terminal, and rate or compare its answers

Run \`hybridchat <command> --help\` for a command's options (also \`hybridchat help train sft\`).

Examples:
  hybridchat serve --model ../shared/models/stories260K
  hybridchat init --preset tiny --out /tmp/tiny
  hybridchat train sft --model ../shared/models/stories260K --data train.jsonl --out ./my-adapter
  hybridchat pipeline --model ../shared/models/stories260K --sft-data sft.jsonl --preference-data prefs.jsonl --prompts prompts.jsonl --out ./rlhf
  hybridchat chat --url http://127.0.0.1:8000
`;

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

export const SERVE_HELP = `Usage: hybridchat serve [options]

Serves a Hugging Face Llama-family checkpoint with an OpenAI-compatible API
(/v1/chat/completions, /v1/completions, /v1/models, /health), keeps every completion
(OpenAI's "store"; GET /v1/chat/completions/{id}) and collects feedback (/v1/feedback).

Options:
  --model DIR               checkpoint directory (config.json, *.safetensors, tokenizer.json).
                            Without it, a built-in tiny model with random (UNTRAINED) weights is served.
  --host HOST               address to bind (default 127.0.0.1). Any other address needs API keys:
                            without them every route (files, jobs, promote) is open to whoever connects
  --api-key KEY:ROLE        require "Authorization: Bearer KEY"; ROLE is user (chat, completions,
                            models, feedback, stored completions) or admin (everything, incl. files,
                            fine-tuning jobs, promote, /metrics); repeatable. Also read from
                            HYBRIDCHAT_API_KEYS="key1:admin,key2:user". /health and the web page stay open
  --port N                  port (default 8000; 0 picks a free one)
  --served-model-name NAME  the id clients send as "model" (default: the directory's name)
  --adapter NAME=DIR        also serve a PEFT LoRA adapter (e.g. from \`hybridchat train sft\`) as
                            model id NAME, on the same base weights; repeatable
  --threads N               compute threads (default: all ${availableParallelism()} cores)
  --tensor-parallel N       split every layer over N thread ranks (Megatron layout: attention by
                            heads, MLP by width; the threads are shared out among them); N must
                            divide the model's key/value heads and MLP width (default 1)
  --max-batch N             most sequences decoded together (default 8)
  --max-queue N             most requests waiting before 429 (default 64)
  --max-context N           cap on prompt + completion tokens (default: the model's)
  --max-body-bytes N        largest request body before 413 (default 8388608)
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
  hybridchat serve --model ../shared/models/stories260K --adapter storyteller=./out/sft
  hybridchat serve --model ../shared/models/stories260K --threads 2 --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --rlhf-after 50 --rlhf-promote
  hybridchat serve --model ../shared/models/stories260K --host 0.0.0.0 --api-key "$ADMIN_KEY:admin" --api-key "$USER_KEY:user"
  HYBRIDCHAT_API_KEYS="$ADMIN_KEY:admin" hybridchat serve --host 0.0.0.0 --data-dir /var/lib/hybridchat
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
  rm      a reward model (LoRA + value head) from preference pairs (JSONL)
  dpo     Direct Preference Optimization of a LoRA policy on preference pairs (JSONL)
  ppo     RLHF with PPO (DeepSpeed-Chat step 3): an actor trained against a reward model

Run \`hybridchat train <method> --help\` for its options; \`hybridchat pipeline\` runs sft, rm
and ppo one after the other.

Examples:
  hybridchat train sft --model ../shared/models/stories260K --data sft.jsonl --out ./sft
  hybridchat train rm --model ../shared/models/stories260K --data prefs.jsonl --out ./rm
  hybridchat train ppo --actor ./sft --reward-model ./rm --prompts prompts.jsonl --out ./ppo
`;

const PREFERENCE_LINES = `Preference pairs, one JSON object a line (one format per file):
  {"prompt":"…","chosen":"…","rejected":"…"}
      plain text: each answer is appended to the prompt as it is
  {"input":{"messages":[…]},"preferred_output":[{"role":"assistant","content":"…"}],"non_preferred_output":[{"role":"assistant","content":"…"}]}
      OpenAI's DPO format: the chat template renders the messages, then each answer
Every bad line is reported with its number before anything is trained.`;

const PREFERENCE_OPTIONS = `  --model DIR            base checkpoint directory (required)
  --data FILE.jsonl      preference pairs (required)
  --out DIR              output directory (required; must not hold another run unless --resume)
  --validation FILE      held-out pairs, evaluated after every epoch
  --lora-rank R          LoRA rank (default 8)
  --lora-alpha A         LoRA scale numerator: updates are scaled by A/R (default 2 × R)
  --target-modules LIST  layers LoRA adapts: q,k,v,o,gate,up,down or all (default all)
  --epochs N|auto        passes over the pairs (default auto: as train sft)
  --lr X                 peak learning rate, linear decay (default 2e-3 for rm, 5e-4 for dpo)
  --batch-size B|auto    pairs per optimizer step (default auto: ~0.2 % of the pairs, at least 1)
  --max-length N         longer sequences are truncated (default: the model's context)
  --seed S               pair order and LoRA initialisation (default 0)
  --resume               continue from the last checkpoint in --out (same options and data)
  --threads N            compute threads (default: all ${availableParallelism()} cores)
  --tensor-parallel N    split every layer over N thread ranks (Megatron layout); N must divide
                         the model's key/value heads and MLP width (default 1)`;

export const TRAIN_RM_HELP = `Usage: hybridchat train rm --model DIR --data FILE.jsonl --out DIR [options]

Trains a reward model (DeepSpeed-Chat step 2): the frozen base + its own LoRA adapter + a
scalar value head. The score of prompt + answer is the value at its last token; the loss is
−log σ(score_chosen − score_rejected). With --validation, the held-out pairwise accuracy
(chosen scored above rejected) and mean margin are reported after every epoch.

${PREFERENCE_LINES}

Writes into --out: the adapter in Hugging Face PEFT's layout (adapter_config.json,
adapter_model.safetensors) with value_head.safetensors (v_head.summary.weight), the log
train_log.jsonl (per step: loss, accuracy, margin, lr, grad_norm) and checkpoint-<step>/.

Options:
${PREFERENCE_OPTIONS}
  -h, --help             this help

Example:
  hybridchat train rm --model ../shared/models/stories260K --data prefs.jsonl --validation held-out.jsonl --out ./rm
  hybridchat train rm --model ../shared/models/stories260K --data prefs.jsonl --out ./rm --threads 2 --tensor-parallel 2
`;

export const TRAIN_DPO_HELP = `Usage: hybridchat train dpo --model DIR --data FILE.jsonl --out DIR [options]

Direct Preference Optimization (Rafailov et al. 2023) of a LoRA policy: loss
−log σ(β[(logp_chosen − ref_chosen) − (logp_rejected − ref_rejected)]) over summed answer
log-probs. The reference is the base with adapters off (no second copy of the weights), or
with --adapter the SFT adapter the policy starts from. The defaults work on a few dozen pairs.

${PREFERENCE_LINES}

Writes into --out: the policy adapter in PEFT's layout, the log train_log.jsonl (per step:
loss, implicit rewards and their margin and accuracy, logratio_per_token — how far the
policy drifted from the reference on the data) and checkpoint-<step>/.

Options:
${PREFERENCE_OPTIONS}
  --beta B               DPO's β: how strongly the policy is held to the reference (default 0.1)
  --adapter DIR          start from this PEFT adapter (an SFT result; its LoRA shape replaces
                         --lora-rank/--lora-alpha/--target-modules); it is also the reference
  -h, --help             this help

Example:
  hybridchat train dpo --model ../shared/models/stories260K --data prefs.jsonl --out ./dpo
  hybridchat train dpo --model ../shared/models/stories260K --data prefs.jsonl --out ./dpo --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --adapter dpo=./dpo
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
  --threads N            compute threads, shared out among the ranks (default: all ${availableParallelism()} cores)
  --data-parallel N      data-parallel ranks: each optimizer batch is split among N models of the
                         checkpoint (the base's pages are shared), gradients summed (default 1)
  --zero-stage S         ZeRO partitioning over the ranks: 0 none, 1 optimizer state, 2 also
                         gradients, 3 also the trained weights, gathered only for use (default 0)
  --tensor-parallel N    split every layer over N thread ranks (Megatron layout); N must divide
                         the model's key/value heads and MLP width (default 1)
  -h, --help             this help

Examples:
  hybridchat train sft --model ../shared/models/stories260K --data names.jsonl --out ./names-adapter
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-sft --lora-rank 0 \\
      --data-parallel 2 --zero-stage 3
  hybridchat train sft --model ../shared/models/stories260K --data names.jsonl --out ./names-tp --threads 2 --tensor-parallel 2
  hybridchat train sft --model ./my-llama --data chat.jsonl --validation val.jsonl --out ./chat-lora \\
      --lora-rank 16 --target-modules q,v --epochs 3 --lr 1e-3
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./my-llama-sft --lora-rank 0
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-lora --resume
`;

export const TRAIN_PPO_HELP = `Usage: hybridchat train ppo --actor DIR --reward-model DIR --prompts FILE.jsonl --out DIR [options]

PPO as DeepSpeed-Chat's step 3 runs it, on one copy of the base weights: the actor is the
base plus a LoRA adapter, the reference is the base with adapters off, the critic is the
base plus an adapter and value head copied from the reward model, and the reward model is
its own frozen adapter. Each step samples answers with the serving engine (KV cache,
batched sampling) on the very weights being trained, scores them (reward = −kl_ctl ·
(logp − logp_ref) per token plus the reward model's score clipped to ±clip at the last
one), computes GAE advantages, and takes PPO steps on the actor (clipped policy loss) and
the critic (clipped value loss). Prompts: one {"prompt":"…"} or {"messages":[…]} a line.

Writes into --out: actor/ and critic/ (PEFT adapters; the critic with value_head.safetensors),
actor_ema/ with --ema, checkpoint-<step>/ (both adapters, their AdamW moments, the EMA and
trainer_state.json, for --resume), and ppo_log.jsonl: one line per step with reward, kl, policy_loss,
value_loss, entropy, response_length and the time split generation_s / experience_s /
training_s / switch_s.

Options (defaults are DeepSpeed-Chat's unless noted):
  --actor DIR            an SFT adapter (PEFT) or a model directory (a fresh LoRA on it) (required)
  --model DIR            the base, when --actor is an adapter (default: its base_model_name_or_path)
  --reward-model DIR     reward model adapter with a value head (train rm) (required)
  --prompts FILE.jsonl   prompts (required)
  --out DIR              output directory (required; must not hold another PPO run unless --resume)
  --epochs N             passes over the prompts (default 1)
  --generation-batch N   prompts sampled per step (default 16)
  --train-batch N        sequences per actor/critic optimizer step (default 16)
  --ppo-epochs N         passes over each step's experience (default 1)
  --max-prompt-tokens N  longer prompts are skipped (default 256)
  --max-answer-tokens N  longest sampled answer (default 256)
  --temperature T, --top-p P, --top-k K   answer sampling (default 1, 1, 0: plain sampling)
  --kl-ctl X             KL penalty coefficient (default 0.1)
  --reference base|actor the KL term's reference: the base with adapters off (default), or the
                         SFT adapter --actor starts from, kept frozen (DeepSpeed-Chat's ref model)
  --clip-reward X        reward-model score clipped to ±X (default 5)
  --gamma X, --lambda X  GAE discount and λ (default 1, 0.95)
  --clip-range X         policy ratio clip (default 0.2)
  --clip-range-value X   value clip around the old values (default 0.2)
  --whiten-advantages    normalise advantages over each step's tokens (TRL does; DeepSpeed-Chat does not; default off)
  --actor-lr X, --critic-lr X   LoRA learning rates (default 5e-4 each)
  --schedule S           constant | linear | cosine (default cosine)
  --warmup-steps N       linear warm-up steps (default 0)
  --weight-decay X       AdamW weight decay (default 0; betas 0.9, 0.95)
  --max-grad-norm X      gradient clipping (default 1)
  --ema                  also keep an EMA of the actor (decay 0.992) and save it as actor_ema/
  --ptx-data FILE        SFT JSONL mixed into each actor step as a pretraining loss
  --ptx-coef X           its coefficient (default 27.8)
  --lora-rank R, --lora-alpha A, --target-modules LIST   a fresh actor's LoRA (default 8, 2 × R, all)
  --seed N               sampling and prompt order (default 0)
  --save-steps N         a checkpoint every N steps and after the last; only the newest is kept (default 1)
  --resume               continue from the checkpoint in --out (same options, prompts and seed):
                         the continuation is the same, bit for bit, as a run never stopped
  --threads N            compute threads (default: all cores)
  --tensor-parallel N    split every layer over N thread ranks (Megatron layout), for the rollouts
                         and the training alike; N must divide the key/value heads and MLP width (default 1)
  -h, --help             this help

Examples:
  hybridchat train ppo --actor ./sft --reward-model ./rm --prompts prompts.jsonl --out ./ppo
  hybridchat train ppo --actor ../shared/models/stories260K --reward-model ./rm --prompts prompts.jsonl \\
      --out ./ppo --generation-batch 32 --max-answer-tokens 64 --actor-lr 2e-3 --ema
  hybridchat train ppo --actor ./sft --reward-model ./rm --prompts prompts.jsonl --out ./ppo --threads 2 --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --adapter rlhf=./ppo/actor
`;

export const PIPELINE_HELP = `Usage: hybridchat pipeline --model DIR --sft-data FILE --preference-data FILE --prompts FILE --out DIR [--step 1 2 3] [options]

The three steps of RLHF in one command, as DeepSpeed-Chat's e2e_rlhf.py runs them, on one
loaded copy of the base:
  step 1  SFT: the actor's LoRA adapter from --sft-data             → OUT/step1-sft
  step 2  reward model: LoRA + value head from --preference-data   → OUT/step2-reward-model
  step 3  PPO: the actor starts from step 1's adapter, the critic
          from step 2's reward model; prompts from --prompts       → OUT/step3-ppo (actor/, critic/)
Each step's output is the next one's input and is written as \`train sft|rm|ppo\` write it
(PEFT layout, logs). --step runs some of them: an earlier step not run is read from OUT
(\`--step 3\` needs OUT/step1-sft and OUT/step2-reward-model). Each step shows a progress
bar with its ETA on stderr and ends with one summary line; at the end OUT/training-curves.svg
plots reward, KL, policy and value loss over the PPO steps, the SFT loss, and the reward
model's loss and pairwise accuracy.

Options:
  --model DIR               base checkpoint directory (required)
  --sft-data FILE.jsonl     SFT examples, as train sft reads them (for step 1)
  --preference-data FILE    preference pairs, as train rm reads them (for step 2)
  --prompts FILE.jsonl      PPO prompts, as train ppo reads them (for step 3)
  --out DIR                 where the steps write (a step's directory must not hold a run)
  --step N [N …]            the steps to run, in order (default 1 2 3)
  --resume                  continue an interrupted run: finished steps are kept, the interrupted
                            one resumes from its last checkpoint (same options and data)
  --threads N               compute threads (default: all ${availableParallelism()} cores)
  --tensor-parallel N       split every layer of the base over N thread ranks for all three steps
                            (Megatron layout; N must divide the KV heads and MLP width; default 1)
  -h, --help                this help

Each step takes its \`train\` command's options behind a prefix (defaults as there; "auto"
epochs and batch sizes suit a few dozen examples):
  --sft-…   train sft's: --sft-epochs, --sft-lr, --sft-batch-size, --sft-lora-rank (≥ 1),
            --sft-lora-alpha, --sft-target-modules, --sft-validation, --sft-max-length,
            --sft-schedule, --sft-warmup-steps, --sft-lora-dropout, --sft-seed
  --rm-…    train rm's: --rm-epochs, --rm-lr, --rm-batch-size, --rm-lora-rank, --rm-validation, …
  --ppo-…   train ppo's: --ppo-epochs, --ppo-generation-batch, --ppo-train-batch,
            --ppo-ppo-epochs, --ppo-max-answer-tokens, --ppo-kl-ctl, --ppo-reference, --ppo-actor-lr,
            --ppo-critic-lr, --ppo-ema, --ppo-ptx-data, --ppo-seed, …
One default differs from \`train ppo\`'s: --ppo-reference is actor, so the KL term holds the
actor to step 1's SFT adapter (DeepSpeed-Chat's reference), not to the base.
Run \`hybridchat train sft|rm|ppo --help\` for what each one does.

Examples:
  hybridchat pipeline --model ../shared/models/stories260K --sft-data sft.jsonl \\
      --preference-data prefs.jsonl --prompts prompts.jsonl --out ./rlhf
  hybridchat pipeline --model ../shared/models/stories260K --prompts prompts.jsonl --out ./rlhf \\
      --step 3 --ppo-kl-ctl 0.05 --ppo-max-answer-tokens 64
  hybridchat pipeline --model ./my-llama --sft-data sft.jsonl --preference-data prefs.jsonl \\
      --prompts prompts.jsonl --out ./rlhf --sft-epochs 2 --rm-lr 1e-3 --ppo-generation-batch 8
  hybridchat pipeline --model ../shared/models/stories260K --sft-data sft.jsonl \\
      --preference-data prefs.jsonl --prompts prompts.jsonl --out ./rlhf --threads 2 --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --adapter rlhf=./rlhf/step3-ppo/actor
`;
