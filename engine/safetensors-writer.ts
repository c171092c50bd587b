// fp32 tensors held in memory <-> safetensors files (adapters, optimizer state, trained
// weights), stored as F32 or converted to BF16/F16 on the way out. The atomic streaming
// writer itself is engine/safetensors.ts's writeSafetensors.
import { openSync, readSync, closeSync } from "node:fs";
import { basename } from "node:path";
import { isBlockDType, type DType } from "../native/index.js";
import { readSafetensorsHeader, tensorFromArray, writeSafetensors, type TensorSource } from "./safetensors.js";
import { fromBf16, fromF16, toBf16, toF16 } from "./half.js";

/** How far a file write is: tensor bytes written of `total`, and the file's name (for progress bars). */
export type WriteProgress = (written: number, total: number, file: string) => void;

export interface F32Tensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

function convert(data: Float32Array, dtype: "bf16" | "f16"): Uint16Array {
  const conv = dtype === "bf16" ? toBf16 : toF16;
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return out;
}

/**
 * Writes tensors (in the given order) to `file` atomically: a temp file in the same
 * directory, fsync, rename. `dtype` is the stored type; `metadata` goes in __metadata__;
 * `onProgress` follows the bytes written.
 */
export async function writeF32Tensors(
  file: string,
  tensors: readonly F32Tensor[],
  opts: { dtype?: DType; metadata?: Record<string, string>; onProgress?: WriteProgress } = {},
): Promise<void> {
  const dtype = opts.dtype ?? "f32";
  const sources: TensorSource[] = tensors.map((t) => {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`tensor "${t.name}": shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    return tensorFromArray(t.name, dtype, t.shape, dtype === "f32" ? t.data : convert(t.data, dtype));
  });
  const progress = opts.onProgress;
  await writeSafetensors(file, sources, opts.metadata ?? {}, progress && ((written, total) => progress(written, total, basename(file))));
}

/** Reads every tensor of a safetensors file as fp32 (BF16/F16 widened exactly), keyed by its stored name. */
export function readF32Tensors(file: string): { tensors: Map<string, F32Tensor>; metadata: Record<string, string> } {
  const header = readSafetensorsHeader(file);
  const tensors = new Map<string, F32Tensor>();
  const fd = openSync(file, "r");
  try {
    for (const t of header.tensors) {
      if (isBlockDType(t.dtype)) throw new Error(`${file}: tensor "${t.name}" is ${t.dtype} blocks; only F32/BF16/F16 files are read as fp32`);
      const n = t.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      // files are little-endian, as is every host the addon builds for: read straight into place
      if (t.dtype === "f32") readSync(fd, new Uint8Array(data.buffer), 0, t.byteLength, t.offset);
      else {
        const half = new Uint16Array(n);
        readSync(fd, new Uint8Array(half.buffer), 0, t.byteLength, t.offset);
        const widen = t.dtype === "bf16" ? fromBf16 : fromF16;
        for (let i = 0; i < n; i++) data[i] = widen(half[i]);
      }
      tensors.set(t.name, { name: t.name, shape: [...t.shape], data });
    }
  } finally {
    closeSync(fd);
  }
  return { tensors, metadata: header.metadata };
}
