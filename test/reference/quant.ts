// Reference for llama.cpp's Q8_0 / Q4_0 blocks, written from ggml-common.h's layout and
// ggml-quants.c's quantize_row_q8_0_ref / quantize_row_q4_0_ref (float32 arithmetic step by
// step through Math.fround), independent of native/src/quant.cc.
import { f16ToNumber, numberToF16 } from "./dtype.js";

export type BlockDType = "q8_0" | "q4_0";
export const BLOCK_BYTES: Record<BlockDType, number> = { q8_0: 34, q4_0: 18 };
const QK = 32;

const fr = Math.fround;
/** C's roundf: to nearest, ties away from zero. */
const roundf = (v: number): number => Math.sign(v) * Math.floor(Math.abs(v) + 0.5);

/** Quantizes values (a multiple of 32 of them, each taken as float32) into blocks. */
export function quantize(values: ArrayLike<number>, dtype: BlockDType): Uint8Array {
  const nb = values.length / QK;
  if (!Number.isInteger(nb)) throw new Error(`${values.length} values are not whole blocks of ${QK}`);
  const out = new Uint8Array(nb * BLOCK_BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = Array.from({ length: QK }, (_, j) => fr(values[b * QK + j]!));
    const o = b * BLOCK_BYTES[dtype];
    if (dtype === "q8_0") {
      const amax = Math.max(...x.map(Math.abs));
      const d = fr(amax / 127);
      const id = d !== 0 ? fr(1 / d) : 0;
      view.setUint16(o, numberToF16(d), true);
      for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, roundf(fr(x[j]! * id)));
    } else {
      let amax = 0;
      let max = 0;
      for (const v of x) if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
      const d = fr(max / -8);
      const id = d !== 0 ? fr(1 / d) : 0;
      view.setUint16(o, numberToF16(d), true);
      const q = (v: number): number => Math.min(15, Math.trunc(fr(fr(v * id) + 8.5)));
      for (let j = 0; j < QK / 2; j++) out[o + 2 + j] = q(x[j]!) | (q(x[j + 16]!) << 4);
    }
  }
  return out;
}

/** The weights the blocks hold, exactly (d · q in float64). */
export function dequantize(blocks: Uint8Array, dtype: BlockDType): Float64Array {
  const nb = blocks.length / BLOCK_BYTES[dtype];
  const out = new Float64Array(nb * QK);
  const view = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  for (let b = 0; b < nb; b++) {
    const o = b * BLOCK_BYTES[dtype];
    const d = f16ToNumber(view.getUint16(o, true));
    for (let j = 0; j < QK; j++) {
      const q = dtype === "q8_0" ? view.getInt8(o + 2 + j)
        : j < 16 ? (blocks[o + 2 + j]! & 15) - 8 : (blocks[o + 2 + j - 16]! >> 4) - 8;
      out[b * QK + j] = d * q;
    }
  }
  return out;
}
