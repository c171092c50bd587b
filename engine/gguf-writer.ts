// Writes a GGUF v3 file (gguf.ts reads it): the metadata, the tensor table, then each
// tensor's bytes streamed in order at offsets aligned to 32, atomically (temp file + rename).
import { open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { blockBytes, isBlockDType } from "../native/index.js";
import { GGML_TYPE, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufType } from "./gguf.js";
import type { TensorSource } from "./safetensors.js";

/** A metadata value with the GGUF type it is written as. */
export type GgufMeta =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "strings"; value: readonly string[] }
  | { type: "f32s"; value: readonly number[] }
  | { type: "i32s"; value: readonly number[] };

class Bytes {
  readonly chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: "u32" | "i32" | "f32", v: number): void {
    const b = Buffer.alloc(4);
    if (type === "u32") b.writeUInt32LE(v);
    else if (type === "i32") b.writeInt32LE(v);
    else b.writeFloatLE(v);
    this.push(b);
  }
}

const SCALAR: Record<"u32" | "i32" | "f32", GgufType> = { u32: GgufType.U32, i32: GgufType.I32, f32: GgufType.F32 };

function putMeta(out: Bytes, key: string, m: GgufMeta): void {
  out.str(key);
  switch (m.type) {
    case "u32": case "i32": case "f32":
      out.u32(SCALAR[m.type]);
      return out.scalar(m.type, m.value);
    case "bool":
      out.u32(GgufType.BOOL);
      return out.push(Buffer.of(m.value ? 1 : 0));
    case "string":
      out.u32(GgufType.STRING);
      return out.str(m.value);
    case "strings":
      out.u32(GgufType.ARRAY);
      out.u32(GgufType.STRING);
      out.u64(m.value.length);
      for (const s of m.value) out.str(s);
      return;
    case "f32s": case "i32s": {
      out.u32(GgufType.ARRAY);
      out.u32(m.type === "f32s" ? GgufType.F32 : GgufType.I32);
      out.u64(m.value.length);
      for (const v of m.value) out.scalar(m.type === "f32s" ? "f32" : "i32", v);
      return;
    }
  }
}

const pad = (n: number, a: number): number => Math.ceil(n / a) * a;

function tensorBytes(t: TensorSource): number {
  const n = t.shape.reduce((a, b) => a * b, 1);
  return isBlockDType(t.dtype) ? blockBytes(t.dtype, n) : n * (t.dtype === "f32" ? 4 : 2);
}

/** Writes `tensors` (shape outermost first, as everywhere in the engine) under `metadata`. */
export async function writeGguf(file: string, metadata: ReadonlyMap<string, GgufMeta>, tensors: readonly TensorSource[], onBytes?: (written: number, total: number) => void): Promise<void> {
  const head = new Bytes();
  head.u32(GGUF_MAGIC);
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.size);
  for (const [k, m] of metadata) putMeta(head, k, m);
  let rel = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) head.u64(d); // ne: innermost first
    head.u32(GGML_TYPE[t.dtype]);
    head.u64(rel);
    const n = tensorBytes(t);
    sizes.push(n);
    rel = pad(rel + n, GGUF_DEFAULT_ALIGNMENT);
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  const tmp = join(dirname(file), `.${process.pid}.${Date.now()}.tmp.gguf`);
  const fh = await open(tmp, "w");
  let ok = false;
  try {
    let pos = 0;
    const put = async (b: Uint8Array): Promise<void> => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    for (const c of head.chunks) await put(c);
    await put(Buffer.alloc(pad(pos, GGUF_DEFAULT_ALIGNMENT) - pos));
    let written = 0;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      let got = 0;
      await t.write(async (chunk) => {
        got += chunk.length;
        await put(chunk);
        written += chunk.length;
        onBytes?.(written, total);
      });
      if (got !== sizes[i]) throw new Error(`tensor "${t.name}" wrote ${got} bytes, expected ${sizes[i]}`);
      await put(Buffer.alloc(pad(pos, GGUF_DEFAULT_ALIGNMENT) - pos));
    }
    await fh.close();
    ok = true;
    await rename(tmp, file);
  } finally {
    if (!ok) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}
