// `hybridchat train sft --help`, beside the command (sft.ts); apart from it so `--help` loads nothing heavy.
import { availableParallelism } from "node:os";

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
  --model DIR            checkpoint directory (or a Llama .gguf file) to fine-tune (required)
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
                         checkpoint (the base's pages are shared), gradients summed (default 1);
                         with --device cuda rank r runs on CUDA device r, collectives over NCCL
  --zero-stage S         ZeRO partitioning over the ranks: 0 none, 1 optimizer state, 2 also
                         gradients, 3 also the trained weights, gathered only for use (default 0)
  --tensor-parallel N    split every layer over N thread ranks (Megatron layout); N must divide
                         the model's key/value heads and MLP width (default 1)
  --device D             where the model is loaded and trains: cpu (default), cuda (CUDA device 0,
                         or devices 0..N-1 with --data-parallel N; refused without a device,
                         naming the library paths searched) or auto
  -h, --help             this help

Examples:
  hybridchat train sft --model ../shared/models/stories260K --data names.jsonl --out ./names-adapter
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-sft --lora-rank 0 \\
      --data-parallel 2 --zero-stage 3
  hybridchat train sft --model ../shared/models/stories260K --data names.jsonl --out ./names-tp --threads 2 --tensor-parallel 2
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-dp --device cuda --data-parallel 2 --zero-stage 2
  hybridchat train sft --model ./my-llama --data chat.jsonl --validation val.jsonl --out ./chat-lora \\
      --lora-rank 16 --target-modules q,v --epochs 3 --lr 1e-3
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./my-llama-sft --lora-rank 0
  hybridchat train sft --model ./my-llama --data chat.jsonl --out ./chat-lora --resume
`;
