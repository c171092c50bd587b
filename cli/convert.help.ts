// `hybridchat convert --help`, beside the command (convert.ts).
export const CONVERT_HELP = `Usage: hybridchat convert --model DIR --out FILE.gguf [--type T] [--quantize-head] [--force]

Writes a Llama-family Hugging Face checkpoint as a GGUF file, as llama.cpp's
convert_hf_to_gguf.py writes one: tensor names token_embd, blk.N.attn_q … ffn_down,
output_norm, output; the llama.* metadata (context, embedding, blocks, heads, KV heads,
rope base, RMS epsilon, vocabulary); the tokenizer as tokenizer.ggml.* (a SentencePiece-style
BPE as model "llama" with scores and token types, a byte-level BPE as "gpt2" with its
merges), the special tokens and the chat template; q/k rows permuted for llama.cpp's rope.
llama.cpp, Ollama and \`hybridchat serve --model FILE.gguf\` load the result.

--type f32, f16 or bf16 stores every matrix in that type (norms stay f32). q8_0, q4_0 and
q4_k quantize the layers' linear weights whose rows are whole blocks (32; q4_k 256) and
keep the other matrices as the checkpoint stores them (the norms f32), the same weights
\`hybridchat quantize\` writes. --quantize-head also writes the output head in the block
type, as llama.cpp's quantizer does (a tied model gets its own output tensor; its embedding
stays as stored): a quarter of a bf16 head's bytes a decode step reads, at some accuracy.

Options:
  --model DIR   an f32/bf16/f16 Hugging Face checkpoint directory (Llama family)
  --out FILE    the .gguf file to write (refused if it exists, unless --force)
  --type T      f32 | f16 | bf16 | q8_0 | q4_0 | q4_k   (default f16)
  --quantize-head  the output head in the block type too (q8_0, q4_0, q4_k only)
  --force       overwrite FILE
  -h, --help    this help

Examples:
  hybridchat convert --model ../shared/models/stories260K --out stories260K.gguf --type f32
  hybridchat convert --model ./llama-110m --out llama-110m-q4_k.gguf --type q4_k
  hybridchat convert --model ./llama-110m --out llama-110m-q4_0.gguf --type q4_0 --quantize-head
`;
