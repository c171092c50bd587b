// Float64 references for the training kernels: the forwards they differentiate that
// test/reference/ops.ts lacks, analytic backwards written from the chain rule, and
// central finite differences, which check both without trusting either.
/**
 * ∂L/∂x by central differences, x perturbed in place (and restored): L(x) is the scalar
 * loss, e.g. Σ dout·f(x) through a float64 forward. h is relative to max(1, |x_i|).
 */
export function finiteDiff(loss: () => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    const step = h * Math.max(1, Math.abs(x0));
    x[i] = x0 + step;
    const up = loss();
    x[i] = x0 - step;
    const down = loss();
    x[i] = x0;
    g[i] = (up - down) / (2 * step);
  }
  return g;
}

/** Σ a·b */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** out[T,C] = table[tokens[t], :] */
export function embeddingRef(table: ArrayLike<number>, tokens: ArrayLike<number>, C: number): Float64Array {
  const out = new Float64Array(tokens.length * C);
  for (let t = 0; t < tokens.length; t++)
    for (let c = 0; c < C; c++) out[t * C + c] = table[tokens[t]! * C + c]!;
  return out;
}

/** logp[T] = logits[t, target] − logsumexp(logits[t]); a negative target gives 0 */
export function logprobRef(logits: ArrayLike<number>, targets: ArrayLike<number>, T: number, V: number): Float64Array {
  const out = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    if (targets[t]! < 0) continue;
    out[t] = logits[t * V + targets[t]!]! - logsumexpRef(logits, t * V, V);
  }
  return out;
}

function logsumexpRef(x: ArrayLike<number>, at: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, x[at + i]!);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[at + i]! - m);
  return m + Math.log(s);
}

/** lse[T,NH]: logsumexp of query (t,h)'s causal scaled scores over keys 0..t, or t-W+1..t with a window W (one sequence at positions 0..T-1) */
export function attentionLseRef(q: ArrayLike<number>, k: ArrayLike<number>, T: number, NH: number, NKV: number, HD: number, window = 0): Float64Array {
  const lse = new Float64Array(T * NH);
  const group = NH / NKV, scale = 1 / Math.sqrt(HD);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / group);
      const first = window > 0 ? Math.max(0, t - window + 1) : 0;
      const s = new Float64Array(t + 1 - first);
      for (let j = first; j <= t; j++) {
        let d = 0;
        for (let i = 0; i < HD; i++) d += q[(t * NH + h) * HD + i]! * k[(j * NKV + g) * HD + i]!;
        s[j - first] = d * scale;
      }
      lse[t * NH + h] = logsumexpRef(s, 0, s.length);
    }
  return lse;
}

// ---- analytic backwards -------------------------------------------------------------

/** rmsnorm: dx[M,C] and dweight[C] (not accumulated) */
export function rmsnormBackwardRef(dout: ArrayLike<number>, x: ArrayLike<number>, w: ArrayLike<number>, M: number, C: number, eps: number): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(M * C), dw = new Float64Array(C);
  for (let m = 0; m < M; m++) {
    let ss = 0, d = 0;
    for (let c = 0; c < C; c++) {
      ss += x[m * C + c]! ** 2;
      d += dout[m * C + c]! * w[c]! * x[m * C + c]!;
    }
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) {
      dw[c] += dout[m * C + c]! * x[m * C + c]! * r;
      dx[m * C + c] = r * dout[m * C + c]! * w[c]! - (x[m * C + c]! * r ** 3 * d) / C;
    }
  }
  return { dx, dw };
}

/** swiglu: dgate, dup */
export function swigluBackwardRef(dout: ArrayLike<number>, gate: ArrayLike<number>, up: ArrayLike<number>): { dgate: Float64Array; dup: Float64Array } {
  const n = gate.length, dgate = new Float64Array(n), dup = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const g = gate[i]!, s = 1 / (1 + Math.exp(-g));
    dgate[i] = dout[i]! * up[i]! * s * (1 + g * (1 - s));
    dup[i] = dout[i]! * g * s;
  }
  return { dgate, dup };
}

/** matmul: dx[M,K] = dout·w, dw[N,K] = doutᵀ·x, dbias[N] = Σ rows (not accumulated) */
export function matmulBackwardRef(dout: ArrayLike<number>, x: ArrayLike<number>, w: ArrayLike<number>, M: number, N: number, K: number): { dx: Float64Array; dw: Float64Array; dbias: Float64Array } {
  const dx = new Float64Array(M * K), dw = new Float64Array(N * K), dbias = new Float64Array(N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      const g = dout[m * N + n]!;
      dbias[n] += g;
      for (let k = 0; k < K; k++) {
        dx[m * K + k] += g * w[n * K + k]!;
        dw[n * K + k] += g * x[m * K + k]!;
      }
    }
  return { dx, dw, dbias };
}

/** causal GQA attention of one sequence (positions 0..T-1), optionally windowed: dq, dk, dv */
export function attentionBackwardRef(dout: ArrayLike<number>, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, T: number, NH: number, NKV: number, HD: number, window = 0): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const dq = new Float64Array(T * NH * HD), dk = new Float64Array(T * NKV * HD), dv = new Float64Array(T * NKV * HD);
  const group = NH / NKV, scale = 1 / Math.sqrt(HD);
  const lse = attentionLseRef(q, k, T, NH, NKV, HD, window);
  const qi = (t: number, h: number) => (t * NH + h) * HD, ki = (j: number, g: number) => (j * NKV + g) * HD;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / group);
      const first = window > 0 ? Math.max(0, t - window + 1) : 0;
      const p = new Float64Array(t + 1), dp = new Float64Array(t + 1);
      let D = 0;
      for (let j = first; j <= t; j++) {
        let s = 0, e = 0;
        for (let d = 0; d < HD; d++) {
          s += q[qi(t, h) + d]! * k[ki(j, g) + d]!;
          e += dout[qi(t, h) + d]! * v[ki(j, g) + d]!;
        }
        p[j] = Math.exp(s * scale - lse[t * NH + h]!);
        dp[j] = e;
        D += p[j]! * e;
      }
      for (let j = first; j <= t; j++) {
        const ds = p[j]! * (dp[j]! - D);
        for (let d = 0; d < HD; d++) {
          dq[qi(t, h) + d] += scale * ds * k[ki(j, g) + d]!;
          dk[ki(j, g) + d] += scale * ds * q[qi(t, h) + d]!;
          dv[ki(j, g) + d] += p[j]! * dout[qi(t, h) + d]!;
        }
      }
    }
  return { dq, dk, dv };
}

/** logprob: dlogits[T,V] = dlogp[t]·(onehot − softmax); masked rows 0 */
export function logprobBackwardRef(dlogp: ArrayLike<number>, logits: ArrayLike<number>, targets: ArrayLike<number>, T: number, V: number): Float64Array {
  const d = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    if (targets[t]! < 0) continue;
    const lse = logsumexpRef(logits, t * V, V);
    for (let i = 0; i < V; i++) d[t * V + i] = -dlogp[t]! * Math.exp(logits[t * V + i]! - lse);
    d[t * V + targets[t]!] += dlogp[t]!;
  }
  return d;
}
