// `hybridchat init --help`, beside the command (init.ts); apart from it so `--help` loads nothing heavy.
import { presetNames } from "../engine/presets.js";

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
