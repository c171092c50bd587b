// `hybridchat quantize`'s work: a checkpoint's linear weights rewritten as llama.cpp Q8_0 /
// Q4_0 / Q4_K blocks (native quantizer, llama.cpp's reference rounding), every other tensor and
// file as it was. One tensor is in memory at a time.
import { chmodSync, closeSync, copyFileSync, mkdirSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { native, BLOCK_ELEMS, blockBytes, isBlockDType, type QuantizeDType } from "../native/index.js";
import { fromBf16, fromF16 } from "./half.js";
import { QUANT_KEY, readCheckpointTensors, writeSafetensors, type StoredTensor, type TensorSource } from "./safetensors.js";
import { canonicalName, LINEAR } from "./weights.js";
import { ModelLoadError } from "./load-errors.js";

export interface QuantizeOptions {
  model: string;
  out: string;
  type: QuantizeDType;
  onProgress?: (written: number, total: number) => void;
}

export interface QuantizeSummary {
  quantized: number;
  /** linear weights left as they were: rows not a multiple of the block (32; q4_k 256) long */
  kept: string[];
  bytesIn: number;
  bytesOut: number;
}

export function readBytes(fds: Map<string, number>, t: StoredTensor): Uint8Array {
  let fd = fds.get(t.file);
  if (fd === undefined) fds.set(t.file, (fd = openSync(t.file, "r")));
  const buf = new Uint8Array(t.byteLength);
  if (readSync(fd, buf, 0, t.byteLength, t.offset) !== t.byteLength) throw new ModelLoadError(`${t.file}: short read of "${t.name}"`, "bad_safetensors");
  return buf;
}

export function toF32(t: StoredTensor, raw: Uint8Array): Float32Array {
  if (t.dtype === "f32") return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const half = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const widen = t.dtype === "bf16" ? fromBf16 : fromF16;
  return Float32Array.from(half, (h) => widen(h));
}

export async function quantizeCheckpoint(o: QuantizeOptions): Promise<QuantizeSummary> {
  const stored = readCheckpointTensors(o.model);
  mkdirSync(o.out, { recursive: true });
  // config, tokenizer, generation config, chat template …: everything but the weights
  for (const f of readdirSync(o.model))
    if (!f.endsWith(".safetensors") && f !== "model.safetensors.index.json" && statSync(join(o.model, f)).isFile())
    {
      copyFileSync(join(o.model, f), join(o.out, f));
      chmodSync(join(o.out, f), 0o644); // a read-only source stays overwritable by --force
    }
  const ops = native().ops("cpu");
  const fds = new Map<string, number>();
  const summary: QuantizeSummary = { quantized: 0, kept: [], bytesIn: 0, bytesOut: 0 };
  const sources: TensorSource[] = stored.map((t) => {
    if (isBlockDType(t.dtype)) throw new ModelLoadError(`${t.file}: "${t.name}" is already ${t.dtype}; quantize an f32/bf16/f16 checkpoint`, "bad_safetensors");
    const canon = canonicalName(t.name);
    const linear = canon !== null && LINEAR.test(canon);
    const quantize = linear && t.shape.length === 2 && t.shape[1]! % BLOCK_ELEMS[o.type] === 0;
    if (linear && !quantize) summary.kept.push(t.name);
    summary.bytesIn += t.byteLength;
    const bytesOut = quantize ? blockBytes(o.type, t.shape[0]! * t.shape[1]!) : t.byteLength;
    summary.bytesOut += bytesOut;
    if (quantize) summary.quantized++;
    return {
      name: t.name,
      dtype: quantize ? o.type : t.dtype,
      shape: [...t.shape],
      write: async (sink) => {
        const raw = readBytes(fds, t);
        if (!quantize) return sink(raw);
        const blocks = new Uint8Array(bytesOut);
        ops.fromF32(blocks, toF32(t, raw), o.type);
        return sink(blocks);
      },
    };
  });
  try {
    await writeSafetensors(join(o.out, "model.safetensors"), sources, { format: "pt", [QUANT_KEY]: o.type }, o.onProgress);
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return summary;
}
