// fp32 tensors -> safetensors (F32/BF16/F16) -> back, through our reader and through an
// independent header check in python3 (json + struct only).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readF32Tensors, writeF32Tensors, type F32Tensor } from "../engine/safetensors-writer.js";
import { fromBf16, fromF16, toBf16, toF16 } from "../engine/half.js";

const dir = mkdtempSync(join(tmpdir(), "hc-stw-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const tensors: F32Tensor[] = [
  { name: "a.weight", shape: [2, 3], data: Float32Array.from([1, -2.5, 3.25, 0, 1e-3, -65504]) },
  // odd element count: the header must still leave the data 8-byte aligned
  { name: "b", shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) },
  { name: "empty", shape: [0, 4], data: new Float32Array(0) },
];

const PY = `
import json, struct, sys
path = sys.argv[1]
raw = open(path, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
assert n % 8 == 0, 'header length not a multiple of 8'
hdr = json.loads(raw[8:8 + n].decode('utf-8'))
data = raw[8 + n:]
out = {'metadata': hdr.pop('__metadata__', None), 'tensors': {}}
end = 0
for name, t in sorted(hdr.items(), key=lambda kv: kv[1]['data_offsets'][0]):
    b, e = t['data_offsets']
    assert b == end, 'gap or overlap before ' + name
    end = e
    size = {'F32': 4, 'BF16': 2, 'F16': 2}[t['dtype']]
    count = 1
    for d in t['shape']: count *= d
    assert e - b == count * size, 'size of ' + name
    vals = None
    if t['dtype'] == 'F32': vals = list(struct.unpack('<%df' % count, data[b:e]))
    out['tensors'][name] = {'dtype': t['dtype'], 'shape': t['shape'], 'values': vals}
assert end == len(data), 'trailing bytes'
print(json.dumps(out))
`;

function pythonView(file: string): { metadata: Record<string, string> | null; tensors: Record<string, { dtype: string; shape: number[]; values: number[] | null }> } {
  const r = spawnSync("python3", ["-c", PY, file], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("F32: exact round trip, header checked independently, no temp file left", async () => {
  const file = join(dir, "f32.safetensors");
  await writeF32Tensors(file, tensors, { metadata: { format: "pt", step: "7" } });
  const back = readF32Tensors(file);
  assert.deepEqual(back.metadata, { format: "pt", step: "7" });
  for (const t of tensors) {
    const b = back.tensors.get(t.name)!;
    assert.deepEqual(b.shape, t.shape);
    assert.deepEqual([...b.data], [...t.data]);
  }
  const py = pythonView(file);
  assert.deepEqual(py.metadata, { format: "pt", step: "7" });
  assert.deepEqual(Object.keys(py.tensors).sort(), ["a.weight", "b", "empty"]);
  assert.deepEqual(py.tensors["a.weight"], { dtype: "F32", shape: [2, 3], values: [...tensors[0].data] });
  assert.deepEqual(readdirSync(dir), ["f32.safetensors"]);
});

test("BF16 and F16: stored rounded to nearest even, read back exactly as rounded", async () => {
  for (const dtype of ["bf16", "f16"] as const) {
    const file = join(dir, `${dtype}.safetensors`);
    await writeF32Tensors(file, tensors, { dtype });
    const py = pythonView(file);
    assert.equal(py.tensors["b"].dtype, dtype.toUpperCase());
    const back = readF32Tensors(file).tensors;
    const [to, from] = dtype === "bf16" ? [toBf16, fromBf16] : [toF16, fromF16];
    for (const t of tensors) assert.deepEqual([...back.get(t.name)!.data], [...t.data].map((v) => Math.fround(from(to(v)))));
  }
  // the widening is exact: a few known bit patterns
  assert.equal(fromBf16(0x3f80), 1);
  assert.equal(fromBf16(0xc020), -2.5);
  assert.equal(fromF16(0x3c00), 1);
  assert.equal(fromF16(0xfbff), -65504);
  assert.equal(fromF16(0x0001), 2 ** -24);
  assert.ok(Number.isNaN(fromF16(0x7e00)));
});

test("a shape that does not match the data is refused before anything is written", async () => {
  const file = join(dir, "bad.safetensors");
  await assert.rejects(writeF32Tensors(file, [{ name: "x", shape: [2, 2], data: new Float32Array(3) }]), /shape \[2,2\] holds 4 values, data has 3/);
  assert.ok(!readdirSync(dir).some((f) => f.startsWith("bad") || f.includes("tmp")));
});
