// Reference for llama.cpp's Q8_0 / Q4_0 blocks, written from ggml-common.h's layout and
// ggml-quants.c's quantize_row_q8_0_ref / quantize_row_q4_0_ref (float32 arithmetic step by
// step through Math.fround), independent of native/src/quant.cc.
import { f16ToNumber, numberToF16 } from "./dtype.js";

export type BlockDType = "q8_0" | "q4_0";
export const BLOCK_BYTES: Record<BlockDType, number> = { q8_0: 34, q4_0: 18 };
/** Q4_K: super-blocks of 256 weights in 144 bytes (ggml-common.h's block_q4_K). */
export const Q4K_BYTES = 144;
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

/**
 * The weights Q4_K super-blocks hold, exactly (float64), read from ggml-common.h's layout: fp16 d and
 * dmin, 12 bytes of 6-bit scales and mins (get_scale_min_k4), 128 bytes of nibbles, sub-block j
 * in the low (j even) or high (j odd) nibbles of bytes [32·(j >> 1), +32): w = d·sc·q − dmin·m.
 */
export function dequantizeQ4K(blocks: Uint8Array): Float64Array {
  const nb = blocks.length / Q4K_BYTES;
  const out = new Float64Array(nb * 256);
  const view = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  for (let b = 0; b < nb; b++) {
    const o = b * Q4K_BYTES;
    const d = f16ToNumber(view.getUint16(o, true)), dmin = f16ToNumber(view.getUint16(o + 2, true));
    const s = (i: number): number => blocks[o + 4 + i]!;
    for (let j = 0; j < 8; j++) {
      const sc = j < 4 ? s(j) & 63 : (s(j + 4) & 15) | ((s(j - 4) >> 6) << 4);
      const m = j < 4 ? s(j + 4) & 63 : (s(j + 4) >> 4) | ((s(j) >> 6) << 4);
      for (let l = 0; l < 32; l++) {
        const byte = blocks[o + 16 + 32 * (j >> 1) + l]!;
        const q = j & 1 ? byte >> 4 : byte & 15;
        out[b * 256 + 32 * j + l] = d * sc * q - dmin * m;
      }
    }
  }
  return out;
}

/** Plain 4-bit min/max affine rounding per 32 weights (no search): the baseline Q4_K's search must beat. */
export function minMaxQ4Error(values: ArrayLike<number>): number {
  let err = 0;
  for (let b = 0; b < values.length; b += 32) {
    let mn = 0, mx = -Infinity;
    for (let j = 0; j < 32; j++) [mn, mx] = [Math.min(mn, values[b + j]!), Math.max(mx, values[b + j]!)];
    const scale = (mx - mn) / 15;
    for (let j = 0; j < 32; j++) {
      const q = scale > 0 ? Math.min(15, Math.max(0, Math.round((values[b + j]! - mn) / scale))) : 0;
      err += (q * scale + mn - values[b + j]!) ** 2;
    }
  }
  return err;
}

/**
 * How far rounding x to int8 can move out = x · wᵀ on the CPU's int8 dot-product path for
 * block weights (native/src/cpu/quant_dot.h): x is quantized per block of 32 as llama.cpp's
 * q8_0 does, d = amax/127, q = round(x/d), so |x − d·q| <= d/2 = amax/254 per element and
 * |Δout[m,n]| <= Σ_k |w[n,k]|·amax(block of x[m,k])/254. w: the dequantized [N, K] weights.
 */
export function int8ActivationBound(x: ArrayLike<number>, w: ArrayLike<number>, M: number, N: number, K: number): Float64Array {
  const out = new Float64Array(M * N);
  const half = new Float64Array(M * K); // amax/254 of each element's block
  for (let m = 0; m < M; m++)
    for (let k0 = 0; k0 < K; k0 += 32) {
      let amax = 0;
      for (let k = k0; k < k0 + 32; k++) amax = Math.max(amax, Math.abs(x[m * K + k]!));
      half.fill(amax / 254, m * K + k0, m * K + k0 + 32);
    }
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.abs(w[n * K + k]!) * half[m * K + k]!;
      out[m * N + n] = s;
    }
  return out;
}
