// `hybridchat quantize --help`, beside the command (quantize.ts).
export const QUANTIZE_HELP = `Usage: hybridchat quantize --model DIR --out DIR --type q8_0|q4_0 [--force]

Writes a copy of a checkpoint whose linear weights (q, k, v, o, gate, up, down of every
layer) are llama.cpp Q8_0 or Q4_0 blocks (32 weights and an fp16 scale a block, byte for
byte as llama.cpp stores them), quantized as llama.cpp's reference quantizer does. The
embedding, the head, the norms and every other file are copied as they are; a linear
whose rows are not a multiple of 32 long stays unquantized (it says which).
\`hybridchat serve --model OUT\` loads the result; decode reads 8.5 (q8_0) or 4.5 (q4_0)
bits a weight instead of 16 or 32. The CPU backend only.

Options:
  --model DIR   an f32/bf16/f16 Hugging Face checkpoint directory
  --out DIR     directory to write (must be empty or absent, unless --force)
  --type T      q8_0 | q4_0
  --force       overwrite a checkpoint already in DIR
  -h, --help    this help

Examples:
  hybridchat quantize --model ./llama-110m --out ./llama-110m-q8 --type q8_0
  hybridchat quantize --model ./llama-110m --out ./llama-110m-q4 --type q4_0
`;
