// Float64 references of the native kernels (native/index.ts NativeOps), written
// straight from their definitions. Shapes use the same letters as the C++ side.

/** out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) */
export function matmulRef(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null, M: number, N: number, K: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      out[m * N + n] = s;
    }
  return out;
}

/** out[M,C] = x / sqrt(mean(x²) + eps) * weight */
export function rmsnormRef(x: ArrayLike<number>, weight: ArrayLike<number>, M: number, C: number, eps: number): Float64Array {
  const out = new Float64Array(M * C);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[m * C + c]! ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) out[m * C + c] = x[m * C + c]! * r * weight[c]!;
  }
  return out;
}

/**
 * HF apply_rotary_pos_emb on x[T,H,HD]: x*cos + rotate_half(x)*sin with
 * rotate_half(x) = cat(-x2, x1), cos/sin = cos/sin(pos * invFreq) * scaling repeated twice.
 */
export function ropeRef(x: ArrayLike<number>, pos: ArrayLike<number>, invFreq: ArrayLike<number>, T: number, H: number, HD: number, scaling: number): Float64Array {
  const half = HD / 2;
  const out = new Float64Array(T * H * HD);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const base = (t * H + h) * HD;
      for (let d = 0; d < HD; d++) {
        const i = d % half;
        const a = pos[t]! * invFreq[i]!;
        const cos = Math.cos(a) * scaling, sin = Math.sin(a) * scaling;
        const rot = d < half ? -x[base + d + half]! : x[base + d - half]!;
        out[base + d] = x[base + d]! * cos + rot * sin;
      }
    }
  return out;
}

/**
 * out[T,NH,HD]: causal GQA softmax attention; query t sits at position S-T+t of k,v[S,NKV,HD].
 * With a sliding window W > 0 the query at position p sees keys p-W+1..p only (transformers'
 * sliding_window mask: kv_idx > q_idx - W).
 */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, T: number, S: number, NH: number, NKV: number, HD: number, window = 0): Float64Array {
  const out = new Float64Array(T * NH * HD);
  const group = NH / NKV;
  const scale = 1 / Math.sqrt(HD);
  for (let t = 0; t < T; t++) {
    const last = S - T + t;
    const first = window > 0 ? Math.max(0, last - window + 1) : 0;
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / group);
      const scores = new Float64Array(last + 1);
      let max = -Infinity;
      for (let j = first; j <= last; j++) {
        let s = 0;
        for (let d = 0; d < HD; d++) s += q[(t * NH + h) * HD + d]! * k[(j * NKV + g) * HD + d]!;
        scores[j] = s * scale;
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = first; j <= last; j++) sum += scores[j] = Math.exp(scores[j]! - max);
      for (let d = 0; d < HD; d++) {
        let acc = 0;
        for (let j = first; j <= last; j++) acc += scores[j]! * v[(j * NKV + g) * HD + d]!;
        out[(t * NH + h) * HD + d] = acc / sum;
      }
    }
  }
  return out;
}

/** silu(gate) * up */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const out = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  return out;
}
