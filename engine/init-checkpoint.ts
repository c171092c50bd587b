// Writes a randomly initialised HF checkpoint directory for any supported Llama-family config:
// config.json, model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json.
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DType } from "../native/index.js";
import type { ModelConfig } from "./types.js";
import { parseConfig } from "./config.js";
import { withArchDefaults } from "./config-defaults.js";
import { expectedShapes, hfName } from "./weights.js";
import { writeSafetensors, type TensorSource } from "./safetensors.js";
import { buildTokenizerConfig, buildTokenizerJson } from "./init-tokenizer.js";
import { toBf16, toF16 } from "./half.js";
import { Rng } from "./rng.js";
import type { JsonObject } from "./json-file.js";

export interface InitOptions {
  /** HF config.json body (a preset, or a user's file) */
  config: JsonObject;
  out: string;
  dtype?: DType;
  seed?: number;
  /** std of linear and embedding weights (HF initializer_range default: 0.02) */
  std?: number;
  /**
   * std of the noise added to norm weights (HF: exactly 1) and of biases (HF: 0). Golden tests
   * set it so that a kernel ignoring a norm weight or bias cannot pass.
   */
  perturbStd?: number;
  /** extra fields merged into the config's "hybridchat" marker */
  marker?: JsonObject;
  onProgress?: (written: number, total: number) => void;
}

const TORCH_DTYPE: Record<DType, string> = { f32: "float32", bf16: "bfloat16", f16: "float16" };
const CHUNK = 1 << 16; // elements generated per write

export async function initCheckpoint(opts: InitOptions): Promise<{ config: ModelConfig; dir: string }> {
  const dtype = opts.dtype ?? "f32";
  const seed = opts.seed ?? 0;
  const std = opts.std ?? 0.02;
  const perturb = opts.perturbStd ?? 0;
  // transformers' defaults written out, so every reader of the checkpoint agrees with its maker
  const raw: JsonObject = {
    ...withArchDefaults(opts.config),
    torch_dtype: TORCH_DTYPE[dtype],
    hybridchat: { untrained: true, seed, std, ...(perturb ? { perturbStd: perturb } : {}), ...(opts.marker ?? {}) },
  };
  const config = parseConfig(raw, "init config");
  await mkdir(opts.out, { recursive: true });

  const tensors: TensorSource[] = [];
  for (const [canon, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm$/.test(canon);
    const isBias = /_bias$/.test(canon);
    const gen = (rng: Rng): number =>
      isNorm ? 1 + (perturb ? perturb * rng.normal() : 0) : isBias ? (perturb ? perturb * rng.normal() : 0) : std * rng.normal();
    tensors.push({
      name: hfName(canon),
      dtype,
      shape,
      async write(sink) {
        // one stream per tensor name: a tensor's values do not depend on the others
        const rng = Rng.stream(seed, canon);
        for (let done = 0; done < n; done += CHUNK) {
          const m = Math.min(CHUNK, n - done);
          let bytes: Uint8Array;
          if (dtype === "f32") {
            const a = new Float32Array(m);
            for (let i = 0; i < m; i++) a[i] = gen(rng);
            bytes = new Uint8Array(a.buffer);
          } else {
            const conv = dtype === "bf16" ? toBf16 : toF16;
            const a = new Uint16Array(m);
            for (let i = 0; i < m; i++) a[i] = conv(gen(rng));
            bytes = new Uint8Array(a.buffer);
          }
          await sink(bytes);
        }
      },
    });
  }
  await writeSafetensors(join(opts.out, "model.safetensors"), tensors, { format: "pt" }, opts.onProgress);

  const bos = 1, eos = 2;
  await writeJsonAtomic(join(opts.out, "config.json"), raw);
  await writeJsonAtomic(join(opts.out, "generation_config.json"), { bos_token_id: bos, eos_token_id: eos });
  await writeJsonAtomic(join(opts.out, "tokenizer.json"), buildTokenizerJson(config.vocabSize));
  await writeJsonAtomic(join(opts.out, "tokenizer_config.json"), buildTokenizerConfig(config.maxPositions));
  return { config, dir: opts.out };
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + "\n");
  await rename(tmp, file);
}
