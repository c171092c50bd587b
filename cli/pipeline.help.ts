// `hybridchat pipeline --help`, beside the command (pipeline.ts); apart from it so `--help` loads nothing heavy.
import { availableParallelism } from "node:os";

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
  --device D                where the base is loaded for all three steps: cpu (default), cuda (CUDA
                            device 0: generation runs there, the training steps on the CPU for
                            now; refused without a device, naming the paths searched) or auto
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
