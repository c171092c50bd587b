// `hybridchat train --help`: the methods (each method's own help is beside its module).

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
