// GGUF (llama.cpp's model file, version 2 and 3) read without touching tensor data: the
// header, every metadata key/value and the tensor table, each read checked against the file's
// size so a truncated or malformed file is refused with what is wrong and where, never a crash.
// Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
// (string key, u32 type, value), the tensor infos (name, u32 dims, u64 ne[dims] innermost
// first, u32 ggml type, u64 offset from the data start), then the data, aligned to
// general.alignment (default 32).
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { BLOCK_BYTES, BLOCK_ELEMS, type StorageDType } from "../native/index.js";
import { ModelLoadError } from "./load-errors.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_type: how a metadata value is stored. */
export const enum GgufType {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
}

/** The ggml_type ids of the tensor types we read or write (others are named when refused). */
export const GGML_TYPE: Record<StorageDType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, q4_k: 12, q6_k: 14, bf16: 30 };
const GGML_NAMES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
  13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
  22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
};
const FROM_GGML = new Map<number, StorageDType>(Object.entries(GGML_TYPE).map(([k, v]) => [v, k as StorageDType]));

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensor {
  name: string;
  /** row-major, outermost first (GGUF's ne reversed): a linear weight is [out, in] */
  shape: number[];
  dtype: StorageDType;
  /** absolute byte offset in the file */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  file: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensor[];
  alignment: number;
  dataOffset: number;
}

function bad(file: string, msg: string): never {
  throw new ModelLoadError(`${file}: not a valid GGUF file: ${msg}`, "bad_gguf");
}

// Reads the file front to back through a buffer refilled on demand (the metadata of a large
// vocabulary is megabytes; the tensor data after it is never read).
class Cursor {
  #buf = Buffer.alloc(0);
  #start = 0; // file offset of #buf[0]
  pos = 0;
  constructor(private readonly fd: number, readonly size: number, readonly file: string) {}

  #need(n: number, what: string): number {
    if (this.pos + n > this.size) bad(this.file, `${what} at byte ${this.pos} (${n} bytes) runs past the end of the file (${this.size} bytes): truncated?`);
    const rel = this.pos - this.#start;
    if (rel + n > this.#buf.length) {
      const len = Math.min(this.size - this.pos, Math.max(n, 1 << 20));
      this.#buf = Buffer.alloc(len);
      this.#start = this.pos;
      const got = readSync(this.fd, this.#buf, 0, len, this.pos);
      if (got < n) bad(this.file, `short read at byte ${this.pos}`);
      return this.#at(n);
    }
    return this.#at(n);
  }
  #at(n: number): number {
    const rel = this.pos - this.#start;
    this.pos += n;
    return rel;
  }
  u8(w: string): number {
    const at = this.#need(1, w); // before reading #buf: #need may refill it
    return this.#buf.readUInt8(at);
  }
  i8(w: string): number {
    const at = this.#need(1, w); // before reading #buf: #need may refill it
    return this.#buf.readInt8(at);
  }
  u16(w: string): number {
    const at = this.#need(2, w); // before reading #buf: #need may refill it
    return this.#buf.readUInt16LE(at);
  }
  i16(w: string): number {
    const at = this.#need(2, w); // before reading #buf: #need may refill it
    return this.#buf.readInt16LE(at);
  }
  u32(w: string): number {
    const at = this.#need(4, w); // before reading #buf: #need may refill it
    return this.#buf.readUInt32LE(at);
  }
  i32(w: string): number {
    const at = this.#need(4, w); // before reading #buf: #need may refill it
    return this.#buf.readInt32LE(at);
  }
  f32(w: string): number {
    const at = this.#need(4, w); // before reading #buf: #need may refill it
    return this.#buf.readFloatLE(at);
  }
  f64(w: string): number {
    const at = this.#need(8, w); // before reading #buf: #need may refill it
    return this.#buf.readDoubleLE(at);
  }
  u64(w: string): bigint {
    const at = this.#need(8, w); // before reading #buf: #need may refill it
    return this.#buf.readBigUInt64LE(at);
  }
  i64(w: string): bigint {
    const at = this.#need(8, w); // before reading #buf: #need may refill it
    return this.#buf.readBigInt64LE(at);
  }
  /** a u64 that must be a count or offset small enough to be a JS number */
  size64(w: string, max: number): number {
    const v = this.u64(w);
    if (v > BigInt(Math.floor(max))) bad(this.file, `${w} is ${v}, more than the file could hold`);
    return Number(v);
  }
  str(w: string): string {
    const n = this.size64(`${w} length`, this.size - this.pos);
    const rel = this.#need(n, w);
    return this.#buf.toString("utf8", rel, rel + n);
  }
}

function readValue(c: Cursor, type: number, key: string, depth = 0): GgufValue {
  switch (type) {
    case GgufType.U8: return c.u8(key);
    case GgufType.I8: return c.i8(key);
    case GgufType.U16: return c.u16(key);
    case GgufType.I16: return c.i16(key);
    case GgufType.U32: return c.u32(key);
    case GgufType.I32: return c.i32(key);
    case GgufType.F32: return c.f32(key);
    case GgufType.F64: return c.f64(key);
    case GgufType.U64: return c.u64(key);
    case GgufType.I64: return c.i64(key);
    case GgufType.BOOL: {
      const b = c.u8(key);
      if (b > 1) bad(c.file, `metadata "${key}" is a bool of value ${b}`);
      return b === 1;
    }
    case GgufType.STRING: return c.str(key);
    case GgufType.ARRAY: {
      if (depth > 0) bad(c.file, `metadata "${key}" nests arrays`);
      const et = c.u32(`${key} element type`);
      const n = c.size64(`${key} element count`, c.size - c.pos);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, et, key, depth + 1);
      return out;
    }
    default: return bad(c.file, `metadata "${key}" has unknown value type ${type}`);
  }
}

/** Reads and checks a GGUF file's header and tensor table; tensor data stays on disk. */
export function readGguf(file: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new ModelLoadError(`cannot open ${file}: ${(e as Error).message}`, "missing_file");
  }
  try {
    const size = fstatSync(fd).size;
    const c = new Cursor(fd, size, file);
    if (size < 4 || c.u32("magic") !== GGUF_MAGIC) bad(file, `it does not start with "GGUF"`);
    const version = c.u32("version");
    if (version !== 2 && version !== 3) bad(file, `version ${version}; supported: 2 and 3`);
    // each tensor info and key/value takes at least 8 bytes: bounds the counts before allocating
    const nTensors = c.size64("tensor count", size / 8);
    const nKv = c.size64("metadata count", size / 8);
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.str(`metadata key ${i}`);
      const type = c.u32(`type of "${key}"`);
      if (metadata.has(key)) bad(file, `metadata "${key}" appears twice`);
      metadata.set(key, readValue(c, type, key));
    }
    const al = metadata.get("general.alignment") ?? GGUF_DEFAULT_ALIGNMENT;
    if (typeof al !== "number" || !Number.isInteger(al) || al <= 0 || (al & (al - 1)) !== 0)
      bad(file, `general.alignment ${String(al)} is not a power of two`);
    const infos: { name: string; ne: number[]; type: number; rel: number }[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = c.str(`tensor ${i} name`);
      const nd = c.u32(`dims of "${name}"`);
      if (nd < 1 || nd > 4) bad(file, `tensor "${name}" has ${nd} dimensions (1 to 4)`);
      const ne: number[] = [];
      for (let d = 0; d < nd; d++) ne.push(c.size64(`dimension ${d} of "${name}"`, Number.MAX_SAFE_INTEGER));
      const type = c.u32(`type of "${name}"`);
      const rel = c.size64(`offset of "${name}"`, Number.MAX_SAFE_INTEGER); // checked against the size below
      infos.push({ name, ne, type, rel });
    }
    const dataOffset = Math.ceil(c.pos / (al as number)) * (al as number);
    const tensors: GgufTensor[] = [];
    const seen = new Set<string>();
    for (const t of infos) {
      if (seen.has(t.name)) bad(file, `tensor "${t.name}" appears twice`);
      seen.add(t.name);
      const dtype = FROM_GGML.get(t.type);
      const shape = [...t.ne].reverse();
      if (!dtype) {
        const name = GGML_NAMES[t.type] ?? `type ${t.type}`;
        throw new ModelLoadError(`${file}: tensor "${t.name}" is ${name}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K`, "bad_gguf");
      }
      const n = t.ne.reduce((a, b) => a * b, 1);
      let byteLength: number;
      if (dtype === "f32") byteLength = 4 * n;
      else if (dtype === "f16" || dtype === "bf16") byteLength = 2 * n;
      else {
        if (t.ne[0]! % BLOCK_ELEMS[dtype] !== 0) bad(file, `tensor "${t.name}" is ${dtype} with rows of ${t.ne[0]}, not whole blocks of ${BLOCK_ELEMS[dtype]}`);
        byteLength = (n / BLOCK_ELEMS[dtype]) * BLOCK_BYTES[dtype];
      }
      if (t.rel % (al as number) !== 0) bad(file, `tensor "${t.name}" at data offset ${t.rel} is not aligned to ${al}`);
      const offset = dataOffset + t.rel;
      if (offset + byteLength > size)
        bad(file, `tensor "${t.name}" [${shape.join(", ")}] ${dtype} at byte ${offset} (+${byteLength}) runs past the end of the file (${size} bytes): truncated?`);
      tensors.push({ name: t.name, shape, dtype, offset, byteLength });
    }
    return { file, version, metadata, tensors, alignment: al as number, dataOffset };
  } finally {
    closeSync(fd);
  }
}
