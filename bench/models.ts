// Benchmark checkpoints are made by the project itself (random init: weights don't change speed),
// once, into bench/out/models, and reused by later runs; so are their GGUFs, written by
// `hybridchat convert`'s code.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isBlockDType, type DType } from "../native/index.js";
import { convertToGguf, type GgufOutType } from "../engine/convert-gguf.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import type { JsonObject } from "../engine/json-file.js";
import { preset } from "../engine/presets.js";
import { progressBar } from "./progress.js";

/**
 * Issue 17's 1B-class shape: hidden 2048, GQA 32/8, MLP 8192, vocab 32000, untied head. The 110M
 * preset gives the Llama fields; every shape field is replaced. `layers` below 16 makes a
 * shallower model of the same width, for when the 1B is too slow.
 */
function oneBConfig(layers: number): JsonObject {
  return {
    ...preset("110M"),
    hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: layers, num_attention_heads: 32, num_key_value_heads: 8,
    vocab_size: 32000, max_position_embeddings: 2048, tie_word_embeddings: false,
  };
}

/** The 1B-class model's bench name at `layers` layers: "1B" at its full 16, "1B-L4" shallower. */
export const oneBName = (layers: number): string => (layers === 16 ? "1B" : `1B-L${layers}`);

/** A bench model's HF config: "1B" / "1B-L<layers>" (issue 17's 1B class), else an `init` preset ("110M"). */
export function benchConfig(name: string): JsonObject {
  const oneB = /^1B(?:-L(\d+))?$/.exec(name);
  if (!oneB) return preset(name);
  const layers = oneB[1] === undefined ? 16 : Number(oneB[1]);
  if (!(layers >= 1 && layers <= 16)) throw new Error(`${name}: the 1B-class model has 1 to 16 layers`);
  return oneBConfig(layers);
}

export async function benchCheckpoint(outRoot: string, name: string, dtype: DType): Promise<string> {
  const dir = join(outRoot, "models", `${name}-${dtype}`);
  if (existsSync(join(dir, "model.safetensors")) && existsSync(join(dir, "tokenizer.json"))) return dir;
  const bar = progressBar(`init ${name} ${dtype}`);
  await initCheckpoint({ config: benchConfig(name), out: dir, dtype, seed: 0, onProgress: bar.update });
  bar.stop();
  return dir;
}

/**
 * The bench model `name` as a GGUF of `type`, converted once and reused. f32 comes from an f32
 * checkpoint, everything else from bf16. The block types carry the output head in their own type
 * (`convert --quantize-head`: llama-quantize never leaves a head in bf16 either), so the files
 * are what a user downloads; the name says so, and files from before that change are not reused.
 */
export async function benchGguf(outRoot: string, name: string, type: GgufOutType): Promise<string> {
  const quantizeHead = isBlockDType(type);
  const out = join(outRoot, "models", `${name}-${type}${quantizeHead ? "-qhead" : ""}.gguf`);
  if (existsSync(out)) return out;
  const model = await benchCheckpoint(outRoot, name, type === "f32" ? "f32" : "bf16");
  const bar = progressBar(`convert ${name} ${type}`);
  await convertToGguf({ model, out, type, quantizeHead, onProgress: bar.update });
  bar.stop();
  return out;
}
