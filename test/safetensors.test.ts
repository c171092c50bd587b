import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readCheckpointTensors, readSafetensorsHeader, tensorFromArray, writeSafetensors } from "../engine/safetensors.js";
import { ModelLoadError } from "../engine/load-errors.js";

const made: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "hc-st-"));
  made.push(d);
  return d;
};
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function isLoadError(code: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  };
}

/** A raw safetensors file from a header object and a data size. */
function rawFile(path: string, header: unknown, dataBytes: number): void {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

test("write then read: absolute offsets point at each tensor's bytes; header is 8-byte aligned", async () => {
  const dir = tmp();
  const file = join(dir, "model.safetensors");
  const a = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const b = Uint16Array.from([0x3f80, 0x4000, 0xc040]);
  const c = Uint16Array.from([0x3c00]);
  await writeSafetensors(file, [tensorFromArray("a", "f32", [2, 3], a), tensorFromArray("b", "bf16", [3], b), tensorFromArray("c", "f16", [1, 1], c)], { format: "pt" });
  const h = readSafetensorsHeader(file);
  assert.deepEqual(h.metadata, { format: "pt" });
  const bytes = readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0);
  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  const ta = byName.get("a")!;
  assert.deepEqual([ta.dtype, ta.shape, ta.offset, ta.byteLength], ["f32", [2, 3], 8 + headerLen, 24]);
  assert.deepEqual(Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + ta.offset, bytes.byteOffset + ta.offset + 24))), [1, 2, 3, 4, 5, 6]);
  const tb = byName.get("b")!;
  assert.deepEqual([tb.dtype, tb.offset], ["bf16", 8 + headerLen + 24]);
  assert.equal(bytes.readUInt16LE(tb.offset + 4), 0xc040);
  const tc = byName.get("c")!;
  assert.deepEqual([tc.dtype, tc.shape], ["f16", [1, 1]]);
  assert.equal(bytes.readUInt16LE(tc.offset), 0x3c00);
  // atomic write: nothing but the file itself is left behind
  assert.deepEqual(readdirSync(dir), ["model.safetensors"]);
});

test("a writer that produces the wrong byte count fails and leaves no file", async () => {
  const dir = tmp();
  const file = join(dir, "x.safetensors");
  await assert.rejects(
    writeSafetensors(file, [{ name: "t", dtype: "f32", shape: [4], write: (sink) => sink(new Uint8Array(8)) }]),
    /produced 8 bytes, expected 16/,
  );
  assert.deepEqual(readdirSync(dir), []);
});

test("unsupported dtypes are rejected naming the tensor", () => {
  const f = join(tmp(), "m.safetensors");
  rawFile(f, { w: { dtype: "I64", shape: [2], data_offsets: [0, 16] } }, 16);
  assert.throws(() => readSafetensorsHeader(f), isLoadError("bad_safetensors", /"w".*I64.*F32, BF16, F16/));
});

test("header offsets are validated against the shape and the file size", () => {
  const dir = tmp();
  const f1 = join(dir, "short.safetensors");
  rawFile(f1, { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8);
  assert.throws(() => readSafetensorsHeader(f1), isLoadError("bad_safetensors", /"w".*past the end/));
  const f2 = join(dir, "shape.safetensors");
  rawFile(f2, { w: { dtype: "F32", shape: [4], data_offsets: [0, 12] } }, 16);
  assert.throws(() => readSafetensorsHeader(f2), isLoadError("bad_safetensors", /"w" spans 12 bytes.*needs 16/));
  const f3 = join(dir, "len.safetensors");
  const buf = Buffer.alloc(16);
  buf.writeBigUInt64LE(1000n);
  writeFileSync(f3, buf);
  assert.throws(() => readSafetensorsHeader(f3), isLoadError("bad_safetensors", /header length 1000 exceeds/));
  const f4 = join(dir, "tiny.safetensors");
  writeFileSync(f4, Buffer.alloc(3));
  assert.throws(() => readSafetensorsHeader(f4), isLoadError("bad_safetensors", /shorter than/));
  const f5 = join(dir, "json.safetensors");
  const j = Buffer.from("{oops");
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(j.length));
  writeFileSync(f5, Buffer.concat([l, j]));
  assert.throws(() => readSafetensorsHeader(f5), isLoadError("bad_safetensors", /not JSON/));
});

test("sharded checkpoints are read through model.safetensors.index.json", async () => {
  const dir = tmp();
  await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [tensorFromArray("a", "f32", [2], Float32Array.of(1, 2))]);
  await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [
    tensorFromArray("b", "f32", [1], Float32Array.of(3)),
    tensorFromArray("c", "f32", [1], Float32Array.of(4)),
  ]);
  const index = { metadata: { total_size: 16 }, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } };
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
  const ts = readCheckpointTensors(dir);
  assert.deepEqual(ts.map((t) => [t.name, t.file.endsWith("model-00002-of-00002.safetensors")]).sort(), [["a", false], ["b", true], ["c", true]]);
  const c = ts.find((t) => t.name === "c")!;
  assert.equal(readFileSync(c.file).readFloatLE(c.offset), 4);

  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { ...index.weight_map, d: "model-00001-of-00002.safetensors" } }));
  assert.throws(() => readCheckpointTensors(dir), isLoadError("missing_tensor", /"d".*not in the shard/));
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "model-00009-of-00009.safetensors" } }));
  assert.throws(() => readCheckpointTensors(dir), isLoadError("missing_file", /model-00009-of-00009/));
});

test("a directory without weights is a missing_file error", () => {
  const dir = tmp();
  assert.throws(() => readCheckpointTensors(dir), isLoadError("missing_file", /model\.safetensors/));
  assert.equal(existsSync(join(dir, "model.safetensors")), false);
});
