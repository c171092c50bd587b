// Run as a child process with HYBRIDCHAT_CUDA_LIB naming a CUDA op library (test/cuda-build
// runs it on the host-emulation build of native/src/cuda): every entry point of ops("cuda")
// on fresh random inputs against the same call on ops("cpu"). Prints one JSON line:
// { seed, devices, ops: { name: worst |cuda − cpu| − (atol + rtol·|cpu|) } }; a result ≤ 0 is
// within tolerance. The float64 references stay in native-ops/native-backward; this says
// what this particular library computes.
import { native, blockBytes, type DType, type NativeOps, type QuantizeDType } from "../native/index.js";
import { freshSeed, Rng } from "./reference/check.js";

type Arr = Float32Array | Uint16Array | Uint8Array;
// The CPU side on its exact kernels: from 2 rows up the SIMD levels round x to int8 for the
// block formats (cpu/quant_gemm*), as decode always did, where the device keeps x in fp32.
// Read once, at the first kernel dispatch (cpu/dispatch.cc), which no import makes.
process.env.HYBRIDCHAT_KERNELS = "portable";
const seed = Number(process.env.SEED ?? freshSeed());
const rng = new Rng(seed);
const excess: Record<string, number> = {};

/** worst (|a − b| − atol − rtol·|b|) over the elements; equal values (infinities too) and NaN on both sides agree */
function worst(a: Arr, b: Arr, atol: number, rtol: number): number {
  let w = -Number.MAX_VALUE; // every element equal
  for (let i = 0; i < b.length; i++) {
    if (a[i] === b[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) continue;
    const e = Math.abs(a[i] - b[i]) - atol - rtol * Math.abs(b[i]);
    // NaN on one side only: as far off as it gets (JSON has no Infinity)
    w = Math.max(w, Number.isNaN(e) ? Number.MAX_VALUE : e);
  }
  return w;
}

/** calls `f` on each backend with its own copies of the arrays (outputs may be inputs too), compares the outputs at `outs` */
function both(name: string, args: () => Arr[], outs: number[], f: (o: NativeOps, a: Arr[]) => void, atol: number, rtol: number): void {
  const base = args();
  const run = (b: "cpu" | "cuda"): Arr[] => {
    const a = base.map((x) => x.slice());
    f(native().ops(b), a);
    return a;
  };
  const cpu = run("cpu");
  const cuda = run("cuda");
  for (const i of outs) excess[name] = Math.max(excess[name] ?? -Number.MAX_VALUE, worst(cuda[i], cpu[i], atol, rtol));
}

const f32 = (n: number, lo = -1, hi = 1): Float32Array => rng.f32(n, lo, hi);
const ints = (n: number, hi: number): Int32Array => Int32Array.from({ length: n }, () => rng.int(hi));
const F = (a: Arr): Float32Array => a as Float32Array;

const [M, N, K] = [19, 37, 70];
for (const dtype of ["f32", "bf16", "f16"] as DType[]) {
  const w = (): Arr => (dtype === "f32" ? f32(N * K) : (() => { const u = new Uint16Array(N * K); native().ops("cpu").fromF32(u, f32(N * K), dtype); return u; })());
  const W = w();
  both("matmul", () => [new Float32Array(M * N), f32(M * K), W, f32(N)], [0], (o, a) => o.matmul(F(a[0]), F(a[1]), a[2], dtype, F(a[3]), M, N, K), 1e-5, 1e-5);
  both("matmulBackward", () => [new Float32Array(M * K), f32(N * K), f32(N), f32(M * N), f32(M * K), W], [0, 1, 2], (o, a) => o.matmulBackward(F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), a[5], dtype, M, N, K), 1e-5, 1e-5);
}
// llama.cpp's block types as matmul weights (rows of whole blocks), quantized on the CPU
// (m = 67 rows; the CPU side keeps x exact on the portable kernels, above)
for (const dtype of ["q8_0", "q4_0", "q4_k"] as QuantizeDType[]) {
  const [m, n, k] = [67, 37, 512];
  const W = new Uint8Array(blockBytes(dtype, n * k));
  native().ops("cpu").fromF32(W, f32(n * k), dtype);
  both("matmul", () => [new Float32Array(m * n), f32(m * k), W, f32(n)], [0], (o, a) => o.matmul(F(a[0]), F(a[1]), a[2]!, dtype, F(a[3]), m, n, k), 1e-5, 1e-5);
  both("matmulBackward", () => [new Float32Array(m * k), f32(m * n), f32(m * k), W], [0], (o, a) => o.matmulBackward(F(a[0]), null, null, F(a[1]), F(a[2]), a[3]!, dtype, m, n, k), 1e-5, 1e-5);
}
both("rmsnorm", () => [new Float32Array(M * K), f32(M * K, -3, 3), f32(K, 0.5, 1.5)], [0], (o, a) => o.rmsnorm(F(a[0]), F(a[1]), F(a[2]), M, K, 1e-5), 1e-6, 1e-5);
both("rmsnormBackward", () => [new Float32Array(M * K), f32(K), f32(M * K), f32(M * K, -3, 3), f32(K, 0.5, 1.5)], [0, 1], (o, a) => o.rmsnormBackward(F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), M, K, 1e-5), 1e-5, 1e-5);
const [T, S, NH, NKV, HD] = [7, 20, 6, 3, 8];
const pos = ints(T, 4000);
const inv = Float32Array.from({ length: HD / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / HD));
both("rope", () => [f32(T * NH * HD, -2, 2)], [0], (o, a) => o.rope(F(a[0]), pos, inv, T, NH, HD, 0.75), 1e-5, 1e-5);
both("ropeBackward", () => [f32(T * NH * HD, -2, 2)], [0], (o, a) => o.ropeBackward(F(a[0]), pos, inv, T, NH, HD, 0.75), 1e-5, 1e-5);
both("ropeQk", () => [f32(T * NH * HD, -2, 2), f32(T * NKV * HD, -2, 2)], [0, 1], (o, a) => o.ropeQk(F(a[0]), F(a[1]), pos, inv, T, NH, NKV, HD, 0.75), 1e-5, 1e-5);
both("residualRmsnorm", () => [f32(M * K, -3, 3), new Float32Array(M * K), f32(M * K, -3, 3), f32(K, 0.5, 1.5)], [0, 1], (o, a) => o.residualRmsnorm(F(a[0]), F(a[1]), F(a[2]), F(a[3]), M, K, 1e-5), 1e-6, 1e-5);
both("attention", () => [new Float32Array(T * NH * HD), f32(T * NH * HD, -2, 2), f32(S * NKV * HD, -2, 2), f32(S * NKV * HD)], [0], (o, a) => o.attention(F(a[0]), F(a[1]), F(a[2]), F(a[3]), T, S, NH, NKV, HD), 1e-5, 1e-5);
both("attentionTrainForward", () => [new Float32Array(T * NH * HD), new Float32Array(T * NH), f32(T * NH * HD, -2, 2), f32(T * NKV * HD, -2, 2), f32(T * NKV * HD)], [0, 1], (o, a) => o.attentionTrainForward(F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), T, NH, NKV, HD), 1e-5, 1e-5);
{
  // the backward reads the forward's lse: computed once on the CPU and given to both
  const q = f32(T * NH * HD, -2, 2), k = f32(T * NKV * HD, -2, 2), v = f32(T * NKV * HD), lse = new Float32Array(T * NH);
  native().ops("cpu").attentionTrainForward(new Float32Array(T * NH * HD), lse, q, k, v, T, NH, NKV, HD);
  both("attentionBackward", () => [new Float32Array(T * NH * HD), new Float32Array(T * NKV * HD), new Float32Array(T * NKV * HD), f32(T * NH * HD), q, k, v, lse], [0, 1, 2], (o, a) => o.attentionBackward(F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), F(a[5]), F(a[6]), F(a[7]), T, NH, NKV, HD), 1e-5, 1e-4);
}
{
  // one layer's f32 pool of 16 blocks of 4, two sequences: a prefill step (the flash kernel)
  // and a decode step split 3 ways over 30 keys
  const bs = 4, maxb = 8, blocks = 16, pool = blocks * NKV * bs * HD;
  const tables = Int32Array.from({ length: 2 * maxb }, (_, i) => (i * 5) % blocks);
  for (const [seqOf, npos, splits] of [[[0, 0, 0, 1, 1], [3, 4, 5, 20, 21], 1], [[0, 1], [30, 9], 3]] as [number[], number[], number][]) {
    const Tq = seqOf.length;
    both("pagedAttention", () => [new Float32Array(Tq * NH * HD), f32(Tq * NH * HD, -2, 2), f32(pool, -2, 2), f32(pool)], [0], (o, a) =>
      o.pagedAttention(F(a[0]), F(a[1]), F(a[2]), F(a[3]), "f32", tables, 2, maxb, Int32Array.from(seqOf), Int32Array.from(npos), Tq, NH, NKV, HD, bs, 0, splits), 1e-5, 1e-5);
  }
}
both("swiglu", () => [new Float32Array(M * N), f32(M * N, -12, 12), f32(M * N, -2, 2)], [0], (o, a) => o.swiglu(F(a[0]), F(a[1]), F(a[2]), M, N), 1e-6, 1e-5);
both("swigluBackward", () => [new Float32Array(M * N), new Float32Array(M * N), f32(M * N), f32(M * N, -12, 12), f32(M * N, -2, 2)], [0, 1], (o, a) => o.swigluBackward(F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), M, N), 1e-6, 1e-5);
{
  const V = 50, C = 16, Tk = 30;
  const tokens = ints(Tk, V);
  both("embeddingBackward", () => [f32(V * C), f32(Tk * C)], [0], (o, a) => o.embeddingBackward(F(a[0]), F(a[1]), tokens, Tk, C), 1e-6, 1e-6);
  const targets = Int32Array.from({ length: Tk }, (_, t) => (t % 5 === 0 ? -1 : rng.int(V)));
  both("logprob", () => [new Float32Array(Tk), f32(Tk * V, -8, 8)], [0], (o, a) => o.logprob(F(a[0]), F(a[1]), targets, Tk, V), 1e-5, 1e-5);
  both("logprobBackward", () => [new Float32Array(Tk * V), f32(Tk), f32(Tk * V, -8, 8)], [0], (o, a) => o.logprobBackward(F(a[0]), F(a[1]), F(a[2]), targets, Tk, V), 1e-6, 1e-5);
}
for (const dtype of ["bf16", "f16"] as const) {
  const src = f32(4000, -70000, 70000);
  both("fromF32", () => [new Uint16Array(src.length), src], [0], (o, a) => o.fromF32(a[0] as Uint16Array, F(a[1]), dtype), 0, 0);
  const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  both("toF32", () => [new Float32Array(65536), bits], [0], (o, a) => o.toF32(F(a[0]), a[1] as Uint16Array, dtype), 0, 0);
}
{
  // batched multi-adapter LoRA: rows on three adapters of ranks 1, 4, 8 (one undoing: negative scale) or none
  const [T, N, K] = [13, 37, 45];
  const ads = [1, 4, 8].map((rank, i) => ({ a: f32(rank * K), b: f32(N * rank), rank, scale: i === 2 ? -0.5 : 2 }));
  const slot = Int32Array.from({ length: T }, () => rng.int(4) - 1);
  both("lora", () => [f32(T * N), f32(T * K)], [0], (o, a) => o.lora(F(a[0]), F(a[1]), slot, ads, T, N, K), 1e-5, 1e-5);
}
console.log(JSON.stringify({ seed, devices: native().cudaStatus().devices, ops: excess }));
