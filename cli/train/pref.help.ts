// `--help` of `train rm` and `train dpo`, beside their command (pref.ts); apart from it so `--help` loads nothing heavy.
import { availableParallelism } from "node:os";

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
                         the model's key/value heads and MLP width (default 1)
  --device D             where the model is loaded: cpu (default), cuda (CUDA device 0: its
                         generation runs there, the training steps on the CPU for now; refused
                         without a device, naming the library paths searched) or auto`;
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
