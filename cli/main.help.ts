// `hybridchat --help`: the commands; apart from them so `--help` loads nothing heavy.

export const HELP = `Usage: hybridchat <command> [options]

Commands:
  serve   serve a model with an OpenAI-compatible API (default: the bundled pretrained stories260K)
  init    write a randomly initialised Hugging Face checkpoint
  quantize  rewrite a checkpoint's linear weights as llama.cpp Q8_0 / Q4_0 / Q4_K blocks
  convert   write a checkpoint as a GGUF file (llama.cpp, Ollama; serve takes --model FILE.gguf)
  train   fine-tune a model (train sft, rm, dpo, ppo: SFT from JSONL, reward model, DPO, RLHF with PPO)
  pipeline  the three RLHF steps in one run: SFT → reward model → PPO, with training curves
  chat    chat with a running server in the terminal, and rate or compare its answers
  keys    create, list and revoke the API keys a server accepts (no restart needed)

Run \`hybridchat <command> --help\` for a command's options (also \`hybridchat help train sft\`).

Examples:
  hybridchat serve --model ../shared/models/stories260K
  hybridchat init --preset tiny --out /tmp/tiny
  hybridchat train sft --model ../shared/models/stories260K --data train.jsonl --out ./my-adapter
  hybridchat pipeline --model ../shared/models/stories260K --sft-data sft.jsonl --preference-data prefs.jsonl --prompts prompts.jsonl --out ./rlhf
  hybridchat chat --url http://127.0.0.1:8000
`;
