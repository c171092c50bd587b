// Seeded PRNG, one stream per request: a request's draws depend only on its own seed
// and how many tokens it has sampled, never on what else shares the batch.
import { randomInt } from "node:crypto";

/** SplitMix32 finaliser: spreads a seed over all bits so nearby seeds give unrelated streams. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** xoshiro128** (Blackman & Vigna): 128-bit state, period 2^128 - 1, fast on 32-bit integer math. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  /**
   * A named stream of a seed, e.g. one per tensor when initialising weights: the same seed
   * and name give the same numbers on every machine, whatever order the streams are used in.
   */
  static stream(seed: number, name: string): Rng {
    const st = { s: hashString(name, (seed >>> 0) ^ 0x811c9dc5) ^ Math.floor(seed / 0x100000000) };
    const next = (): number => {
      st.s = (st.s + 0x9e3779b9) | 0;
      return mix32(st.s - 0x9e3779b9);
    };
    const r = new Rng(0);
    r.s0 = next();
    r.s1 = next();
    r.s2 = next();
    r.s3 = next();
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) r.s0 = 1;
    return r;
  }

  /**
   * Any safe integer is a seed (OpenAI seeds are 64-bit; negative values are taken modulo 2^64).
   * Without a seed the stream is drawn from the OS.
   */
  constructor(seed?: number) {
    let lo: number;
    let hi: number;
    if (seed === undefined) {
      lo = randomInt(0, 2 ** 32);
      hi = randomInt(0, 2 ** 32);
    } else {
      if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
      const u = BigInt.asUintN(64, BigInt(seed));
      lo = Number(u & 0xffffffffn);
      hi = Number(u >> 32n);
    }
    // Four state words from a SplitMix32 chain over both halves; never all zero.
    let x = mix32(lo ^ mix32(hi));
    this.s0 = x;
    x = mix32(x ^ hi);
    this.s1 = x;
    x = mix32(x ^ lo);
    this.s2 = x;
    x = mix32(x ^ 0x6a09e667);
    this.s3 = x;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** uniform integer in [0, 2^32) */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** uniform double in [0, 1) with 53 random bits */
  nextFloat(): number {
    const a = this.nextU32() >>> 5; // 27 bits
    const b = this.nextU32() >>> 6; // 26 bits
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** standard normal (Box-Muller over two 32-bit uniforms in (0, 1); the second value is kept for the next call) */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log((this.nextU32() + 0.5) / 4294967296));
    const th = 2 * Math.PI * ((this.nextU32() + 0.5) / 4294967296);
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }
}

/** FNV-1a over a string. */
export function hashString(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
