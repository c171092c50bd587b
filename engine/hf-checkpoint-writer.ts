// A fully fine-tuned base -> a Hugging Face checkpoint directory loadModel (and transformers)
// read: config.json, model.safetensors with HF tensor names, and the tokenizer and generation
// files copied from the checkpoint training started from (a GGUF's: built from its metadata).
import { existsSync } from "node:fs";
import { copyFile, mkdir, rename } from "node:fs/promises";
import { join } from "node:path";
import type { DType, NativeModel } from "../native/index.js";
import type { ModelConfig } from "./types.js";
import { hfName } from "./weights.js";
import { readJsonFile } from "./json-file.js";
import { writeF32Tensors, type WriteProgress } from "./safetensors-writer.js";
import { writeJsonAtomic } from "./init-checkpoint.js";
import { isGgufPath, readGgufModel } from "./gguf-model.js";
import { ggufTokenizerFiles } from "./gguf-tokenizer.js";

const TORCH_DTYPE: Record<DType, string> = { f32: "float32", bf16: "bfloat16", f16: "float16" };

/** Files of a checkpoint that describe tokenization and generation, copied as they are. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "tokenizer.model"];

/**
 * Writes the base weights of `model` (its trained fp32 values) to `outDir` as an HF
 * checkpoint. `sourceDir` is the checkpoint it was loaded from (config and tokenizer files).
 * Each file is written atomically; a single model.safetensors replaces any shards.
 */
export async function writeHfCheckpoint(
  model: NativeModel,
  config: ModelConfig,
  sourceDir: string,
  outDir: string,
  opts: { dtype?: DType; onProgress?: WriteProgress } = {},
): Promise<void> {
  const dtype = opts.dtype ?? "f32";
  await mkdir(outDir, { recursive: true });
  const tensors = model.parameters(null).map((p) => ({ name: hfName(p.name), shape: p.shape, data: model.readParameter(null, p.name) }));
  for (const t of tensors) if (t.name === undefined) throw new Error(`base parameter without an HF name: ${JSON.stringify(t.shape)}`);
  await writeF32Tensors(join(outDir, "model.safetensors"), tensors, { dtype, metadata: { format: "pt" }, onProgress: opts.onProgress });
  const gguf = isGgufPath(sourceDir) ? readGgufModel(sourceDir) : null;
  const raw = gguf ? { ...gguf.config } : readJsonFile(join(sourceDir, "config.json"));
  raw.torch_dtype = TORCH_DTYPE[dtype];
  if (config.tieWordEmbeddings) raw.tie_word_embeddings = true;
  await writeJsonAtomic(join(outDir, "config.json"), raw);
  if (gguf) {  // a GGUF base: its tokenizer and template as the files transformers reads
    const f = ggufTokenizerFiles(gguf.gguf);
    await writeJsonAtomic(join(outDir, "tokenizer.json"), f.tokenizerJson);
    await writeJsonAtomic(join(outDir, "tokenizer_config.json"), f.tokenizerConfig);
    await writeJsonAtomic(join(outDir, "generation_config.json"), f.generationConfig);
    return;
  }
  for (const f of TOKENIZER_FILES) {
    const src = join(sourceDir, f);
    if (!existsSync(src)) continue;
    const tmp = join(outDir, `${f}.tmp-${process.pid}`);
    await copyFile(src, tmp);
    await rename(tmp, join(outDir, f));
  }
}
