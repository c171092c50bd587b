// `hybridchat quantize --help`, beside the command (quantize.ts).
export const QUANTIZE_HELP = `Usage: hybridchat quantize --model DIR --out DIR --type q8_0|q4_0|q4_k [--force]

Writes a copy of a checkpoint whose linear weights (q, k, v, o, gate, up, down of every
layer) are llama.cpp Q8_0, Q4_0 or Q4_K blocks, byte for byte as llama.cpp stores them:
Q8_0 and Q4_0 hold 32 weights and an fp16 scale a block; Q4_K super-blocks of 256 weights
in 8 sub-blocks of 32, each with a 6-bit scale and min (its scale and min found by a
weighted least-squares search, as llama.cpp's quantize_row_q4_K_ref does). The embedding,
the head, the norms and every other file are copied as they are; a linear whose rows are
not a multiple of the block (32; q4_k 256) long stays unquantized (it says which).
\`hybridchat serve --model OUT\` loads the result; decode reads 8.5 (q8_0) or 4.5 (q4_0,
q4_k) bits a weight instead of 16 or 32.

Options:
  --model DIR   an f32/bf16/f16 Hugging Face checkpoint directory
  --out DIR     directory to write (must be empty or absent, unless --force)
  --type T      q8_0 | q4_0 | q4_k
  --force       overwrite a checkpoint already in DIR
  -h, --help    this help

Examples:
  hybridchat quantize --model ./llama-110m --out ./llama-110m-q8 --type q8_0
  hybridchat quantize --model ./llama-110m --out ./llama-110m-q4 --type q4_0
  hybridchat quantize --model ./llama-110m --out ./llama-110m-q4k --type q4_k
`;
