// Float64 reference for the 16-bit storage types, written from the IEEE-754 / bfloat16
// definitions by value (not by bit tricks), so it is independent of native/src/dtype.cc.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToNumber(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** Rounds |x| to a grid of spacing `ulp` (nearest, ties to the even multiple). */
function roundToGrid(a: number, ulp: number): number {
  const lo = Math.floor(a / ulp);
  const rem = a - lo * ulp;
  const up = rem > ulp / 2 || (rem === ulp / 2 && lo % 2 === 1);
  return (up ? lo + 1 : lo) * ulp;
}

function binade(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/** f32 value -> f16 bits, round to nearest even; overflow to inf, NaN stays NaN. */
export function numberToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  const ulp = a < 2 ** -14 ? 2 ** -24 : 2 ** (binade(a) - 10);
  const r = roundToGrid(a, ulp);
  if (r >= 65536) return sign | 0x7c00;
  if (r < 2 ** -14) return sign | (r / 2 ** -24);
  const e = binade(r);
  return sign | ((e + 15) << 10) | ((r / 2 ** e - 1) * 1024);
}

/** f32 value -> bf16 bits, round to nearest even; overflow to inf, NaN stays NaN. */
export function numberToBf16(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7f80;
  // bf16 has 8 significant bits and the f32 exponent range (subnormals down to 2^-133)
  const ulp = a < 2 ** -126 ? 2 ** -133 : 2 ** (binade(a) - 7);
  const r = roundToGrid(a, ulp);
  if (r >= 2 ** 128) return sign | 0x7f80;
  if (r < 2 ** -126) return sign | (r / 2 ** -133);
  const e = binade(r);
  return sign | ((e + 127) << 7) | ((r / 2 ** e - 1) * 128);
}

export type WeightDType = "f32" | "bf16" | "f16";

/** Decodes a stored weight array to float64. */
export function toFloat64(src: Float32Array | Uint16Array, dtype: WeightDType): Float64Array {
  const out = new Float64Array(src.length);
  if (dtype === "f32") for (let i = 0; i < src.length; i++) out[i] = src[i]!;
  else {
    const dec = dtype === "bf16" ? bf16ToNumber : f16ToNumber;
    for (let i = 0; i < src.length; i++) out[i] = dec(src[i]!);
  }
  return out;
}

/** Encodes values into a weight array of `dtype` (rounded as the checkpoint writer would). */
export function fromNumbers(values: ArrayLike<number>, dtype: WeightDType): Float32Array | Uint16Array {
  if (dtype === "f32") return Float32Array.from(values as ArrayLike<number>);
  const enc = dtype === "bf16" ? numberToBf16 : numberToF16;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = enc(Math.fround(values[i]!));
  return out;
}
