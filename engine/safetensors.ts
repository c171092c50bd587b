// safetensors headers (read) and files (written). Reading parses only the 8-byte length and the
// JSON header: tensor data stays on disk for the native side to memory-map.
import { openSync, readSync, closeSync, fstatSync, existsSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BLOCK_BYTES, BLOCK_ELEMS, blockBytes, isBlockDType, type DType, type StorageDType } from "../native/index.js";
import { ModelLoadError } from "./load-errors.js";
import { readJsonFile } from "./json-file.js";

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2 };
const FROM_ST: Record<string, DType> = { F32: "f32", BF16: "bf16", F16: "f16" };
const TO_ST: Record<DType, string> = { f32: "F32", bf16: "BF16", f16: "F16" };

/** One tensor as a safetensors header describes it, with its absolute position in the file. */
export interface StoredTensor {
  /** the name in the file (HF name) */
  name: string;
  file: string;
  /** absolute: 8 + headerLength + data_offsets[0] */
  offset: number;
  byteLength: number;
  /** a block type in a quantized file (QUANT_KEY): stored as U8 [out, in/32 · block bytes], `shape` is [out, in] */
  dtype: StorageDType;
  shape: number[];
  /** a GGUF's q/k: rows in llama.cpp's rope order, in this many heads (see TensorRef) */
  ropeHeads?: number;
}

/**
 * __metadata__ key of a quantized checkpoint (`hybridchat quantize`): "q8_0", "q4_0" or "q4_k". Its U8
 * tensors are 2-D [out, in/block · block bytes] arrays of llama.cpp blocks, the weights [out, in].
 */
export const QUANT_KEY = "quantization";

/** Stored bytes of a tensor of `shape` (for a block type: the weights' [out, in]). */
export function storedBytes(dtype: StorageDType, shape: readonly number[]): number {
  const n = shape.reduce((a, b) => a * b, 1);
  return isBlockDType(dtype) ? blockBytes(dtype, n) : n * DTYPE_BYTES[dtype];
}

export interface SafetensorsHeader {
  tensors: StoredTensor[];
  metadata: Record<string, string>;
}

// A header larger than this is not a checkpoint (the reference implementation caps at 100 MB).
const MAX_HEADER = 100 * 1024 * 1024;

/** Reads and validates one file's header; never touches the tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  if (!existsSync(file)) throw new ModelLoadError(`missing file: ${file}`, "missing_file");
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${file}: not a valid safetensors file: ${msg}`, "bad_safetensors");
  };
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    if (size < 8) return bad(`file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER || 8 + headerLen > size) return bad(`header length ${headerLen} exceeds the file size ${size}`);
    const headerBuf = Buffer.alloc(headerLen);
    if (readSync(fd, headerBuf, 0, headerLen, 8) !== headerLen) return bad(`short read of the header`);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString("utf8"));
    } catch (e) {
      return bad(`header is not JSON (${(e as Error).message})`);
    }
    if (header === null || typeof header !== "object" || Array.isArray(header)) return bad(`header is not a JSON object`);
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const tensors: StoredTensor[] = [];
    const meta = (header as Record<string, unknown>).__metadata__;
    const metadata: Record<string, string> = meta && typeof meta === "object" ? (meta as Record<string, string>) : {};
    const quant = metadata[QUANT_KEY];
    if (quant !== undefined && !isBlockDType(quant)) return bad(`__metadata__.${QUANT_KEY} is ${JSON.stringify(quant)}; supported: q8_0, q4_0, q4_k`);
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") continue;
      if (!entry || typeof entry !== "object") return bad(`entry "${name}" is not an object`);
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype: StorageDType | undefined = e.dtype === "U8" && quant ? quant : typeof e.dtype === "string" ? FROM_ST[e.dtype] : undefined;
      if (!dtype) {
        throw new ModelLoadError(`${file}: tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; supported: F32, BF16, F16 (and U8 blocks in a quantized file)`, "bad_safetensors");
      }
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) return bad(`tensor "${name}" has a bad shape`);
      let shape = e.shape as number[];
      if (isBlockDType(dtype)) {  // U8 [out, blocks · block bytes] -> the weights' [out, in]
        if (shape.length !== 2 || shape[1]! % BLOCK_BYTES[dtype] !== 0)
          return bad(`tensor "${name}": U8 [${shape}] is not [out, whole ${dtype} blocks of ${BLOCK_BYTES[dtype]} bytes]`);
        shape = [shape[0]!, (shape[1]! / BLOCK_BYTES[dtype]) * BLOCK_ELEMS[dtype]];
      }
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) return bad(`tensor "${name}" has bad data_offsets`);
      const [begin, end] = off as [number, number];
      const want = storedBytes(dtype, shape);
      if (end - begin !== want) return bad(`tensor "${name}" spans ${end - begin} bytes but shape [${shape}] ${e.dtype} needs ${want}`);
      if (end > dataSize) return bad(`tensor "${name}" ends at data byte ${end}, past the end of the data (${dataSize} bytes)`);
      tensors.push({ name, file, offset: dataStart + begin, byteLength: want, dtype, shape });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/**
 * Every tensor of a checkpoint directory: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (each shard must hold exactly the tensors the index maps to it).
 */
export function readCheckpointTensors(dir: string): StoredTensor[] {
  const indexFile = join(dir, "model.safetensors.index.json");
  const single = join(dir, "model.safetensors");
  if (existsSync(indexFile)) {
    const index = readJsonFile(indexFile);
    const map = index.weight_map;
    if (!map || typeof map !== "object" || Array.isArray(map)) {
      throw new ModelLoadError(`${indexFile}: missing "weight_map" object`, "bad_json");
    }
    const byFile = new Map<string, string[]>();
    for (const [name, f] of Object.entries(map as Record<string, unknown>)) {
      if (typeof f !== "string") throw new ModelLoadError(`${indexFile}: weight_map["${name}"] is not a file name`, "bad_json");
      byFile.set(f, [...(byFile.get(f) ?? []), name]);
    }
    const out: StoredTensor[] = [];
    for (const [f, names] of byFile) {
      const shard = join(dir, f);
      const header = readSafetensorsHeader(shard);
      const have = new Map(header.tensors.map((t) => [t.name, t]));
      for (const name of names) {
        const t = have.get(name);
        if (!t) throw new ModelLoadError(`${shard}: tensor "${name}" is listed in ${indexFile} but not in the shard`, "missing_tensor");
        out.push(t);
      }
    }
    return out;
  }
  if (existsSync(single)) return readSafetensorsHeader(single).tensors;
  throw new ModelLoadError(`missing file: ${single} (nor ${indexFile})`, "missing_file");
}

/** A tensor to write; `write` streams its bytes (exactly byteLength in total) in any chunking. */
export interface TensorSource {
  name: string;
  /** a block type is written as U8 [out, in/32 · block bytes] (QUANT_KEY must be in the metadata) */
  dtype: StorageDType;
  /** for a block type, the weights' [out, in] */
  shape: number[];
  write(sink: (chunk: Uint8Array) => Promise<void>): Promise<void>;
}

/** Bytes as they come out of a TypedArray, for callers that have the whole tensor in memory. */
export function tensorFromArray(name: string, dtype: DType, shape: number[], data: Float32Array | Uint16Array): TensorSource {
  return {
    name,
    dtype,
    shape,
    write: (sink) => sink(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
  };
}

/**
 * Writes a safetensors file atomically (temp file + rename), streaming each tensor.
 * `onBytes` is called with the running count of tensor bytes written (for progress bars).
 */
export async function writeSafetensors(
  file: string,
  tensors: readonly TensorSource[],
  metadata: Record<string, string> = {},
  onBytes?: (written: number, total: number) => void,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let pos = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const n = storedBytes(t.dtype, t.shape);
    const d = t.dtype;
    if (isBlockDType(d) && metadata[QUANT_KEY] !== d) throw new Error(`tensor "${t.name}" is ${d}: the file's metadata must say ${QUANT_KEY}=${d}`);
    header[t.name] = isBlockDType(d)
      ? { dtype: "U8", shape: [t.shape[0], blockBytes(d, t.shape[1]!)], data_offsets: [pos, pos + n] }
      : { dtype: TO_ST[d], shape: t.shape, data_offsets: [pos, pos + n] };
    sizes.push(n);
    pos += n;
  }
  const total = pos;
  let json = Buffer.from(JSON.stringify(header), "utf8");
  // pad with spaces so tensor data starts 8-byte aligned, as the reference writer does
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(json.length));

  const tmp = join(dirname(file), `.${process.pid}.${Date.now()}.tmp.safetensors`);
  const fh = await open(tmp, "w");
  let ok = false;
  try {
    let filePos = 0;
    const put = async (chunk: Uint8Array): Promise<void> => {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done, filePos);
        done += bytesWritten;
        filePos += bytesWritten;
      }
    };
    await put(lenBuf);
    await put(json);
    let written = 0;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      let got = 0;
      await t.write(async (chunk) => {
        got += chunk.byteLength;
        if (got > sizes[i]) throw new Error(`tensor "${t.name}" produced more than its ${sizes[i]} bytes`);
        await put(chunk);
        written += chunk.byteLength;
        onBytes?.(written, total);
      });
      if (got !== sizes[i]) throw new Error(`tensor "${t.name}" produced ${got} bytes, expected ${sizes[i]}`);
    }
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await unlink(tmp).catch(() => undefined);
  }
  await rename(tmp, file);
}
