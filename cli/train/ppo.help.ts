// `hybridchat train ppo --help`, beside the command (ppo.ts); apart from it so `--help` loads nothing heavy.

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
  --device D             where the model is loaded: cpu (default), cuda (CUDA device 0: its
                         generation runs there, the training steps on the CPU for now; refused
                         without a device, naming the library paths searched) or auto
  -h, --help             this help

Examples:
  hybridchat train ppo --actor ./sft --reward-model ./rm --prompts prompts.jsonl --out ./ppo
  hybridchat train ppo --actor ../shared/models/stories260K --reward-model ./rm --prompts prompts.jsonl \\
      --out ./ppo --generation-batch 32 --max-answer-tokens 64 --actor-lr 2e-3 --ema
  hybridchat train ppo --actor ./sft --reward-model ./rm --prompts prompts.jsonl --out ./ppo --threads 2 --tensor-parallel 2
  hybridchat serve --model ../shared/models/stories260K --adapter rlhf=./ppo/actor
`;
