// See sample.h. Every function here mirrors one in engine/sampling.ts line for line; a change
// to one side must be made to the other (test/native-sampling.test.ts holds them together).
//
// Bit-exactness: this file is compiled for baseline x86-64 (no FMA, so no a*b+c contraction),
// without -ffast-math (no reassociation of the sums), and every expression keeps JS's order
// and its float64 intermediates: a logit is a float widened to a double, as a Float32Array read is.
#include "sample.h"

#include "dispatch.h"

#include <cstring>
#include <vector>

namespace hc::cpu {

namespace {

// ====================================================
// Copyright (C) 2004 by Sun Microsystems, Inc. All rights reserved.
//
// Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice
// is preserved.
// ====================================================
// fdlibm e_exp.c as V8 carries it (src/base/ieee754.cc), including its exp(1) special case.
inline uint32_t high_word(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return static_cast<uint32_t>(b >> 32);
}
inline uint32_t low_word(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return static_cast<uint32_t>(b);
}
inline double from_words(uint32_t hi, uint32_t lo) {
  const uint64_t b = (static_cast<uint64_t>(hi) << 32) | lo;
  double x;
  std::memcpy(&x, &b, 8);
  return x;
}

}  // namespace

double fdlibm_exp(double x) {
  static const double one = 1.0, halF[2] = {0.5, -0.5}, o_threshold = 7.09782712893383973096e+02,
                      u_threshold = -7.45133219101941108420e+02,
                      ln2HI[2] = {6.93147180369123816490e-01, -6.93147180369123816490e-01},
                      ln2LO[2] = {1.90821492927058770002e-10, -1.90821492927058770002e-10},
                      invln2 = 1.44269504088896338700e+00, P1 = 1.66666666666666019037e-01,
                      P2 = -2.77777777770155933842e-03, P3 = 6.61375632143793436117e-05,
                      P4 = -1.65339022054652515390e-06, P5 = 4.13813679705723846039e-08, E = 2.718281828459045;
  static volatile double huge = 1.0e+300, twom1000 = 9.33263618503218878990e-302, two1023 = 8.988465674311579539e307;

  double y, hi = 0.0, lo = 0.0, c, t, twopk;
  int32_t k = 0;
  uint32_t hx = high_word(x);
  const int32_t xsb = static_cast<int32_t>((hx >> 31) & 1);
  hx &= 0x7FFFFFFF;

  if (hx >= 0x40862E42) {  // |x| >= 709.78...
    if (hx >= 0x7FF00000) {
      if (((hx & 0xFFFFF) | low_word(x)) != 0) return x + x;  // NaN
      return (xsb == 0) ? x : 0.0;                            // exp(+-inf) = {inf, 0}
    }
    if (x > o_threshold) return huge * huge;
    if (x < u_threshold) return twom1000 * twom1000;
  }

  if (hx > 0x3FD62E42) {    // |x| > 0.5 ln2
    if (hx < 0x3FF0A2B2) {  // and |x| < 1.5 ln2
      if (x == 1.0) return E;
      hi = x - ln2HI[xsb];
      lo = ln2LO[xsb];
      k = 1 - xsb - xsb;
    } else {
      k = static_cast<int32_t>(invln2 * x + halF[xsb]);
      t = k;
      hi = x - t * ln2HI[0];
      lo = t * ln2LO[0];
    }
    x = hi - lo;
  } else if (hx < 0x3E300000) {  // |x| < 2**-28
    if (huge + x > one) return one + x;
  } else {
    k = 0;
  }

  t = x * x;
  if (k >= -1021) twopk = from_words(0x3FF00000u + (static_cast<uint32_t>(k) << 20), 0);
  else twopk = from_words(0x3FF00000u + (static_cast<uint32_t>(k + 1000) << 20), 0);
  c = x - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  if (k == 0) return one - ((x * c) / (c - 2.0) - x);
  y = one - ((lo - (x * c) / (2.0 - c)) - hi);
  if (k >= -1021) {
    if (k == 1024) return y * 2.0 * two1023;
    return y * twopk;
  }
  return y * twopk * twom1000;
}

void exp_inplace(double* x, int64_t n) {
#if defined(HC_HAVE_AVX512_TU)
  static const bool vector = kernel_level() >= KernelLevel::Avx512;
  if (vector) return exp_inplace_avx512(x, n);
#endif
  for (int64_t i = 0; i < n; i++) x[i] = fdlibm_exp(x[i]);
}

namespace {

// argmax: the lowest index of the largest value
int32_t argmax(const float* x, int64_t n) {
  int32_t best = 0;
  float bv = x[0];
  for (int64_t i = 1; i < n; i++) {
    if (x[i] > bv) {
      bv = x[i];
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

int32_t draw_linear(const double* w, int64_t n, double floor, double mass, double u) {
  double r = u * mass;
  int32_t last = 0;
  for (int64_t i = 0; i < n; i++) {
    const double wi = w[i];
    if (wi < floor || wi == 0) continue;
    last = static_cast<int32_t>(i);
    r -= wi;
    if (r < 0) return static_cast<int32_t>(i);
  }
  return last;
}

inline bool before(const double* key, int32_t a, int32_t b) {
  const double ka = key[a];
  const double kb = key[b];
  return ka > kb || (ka == kb && a < b);
}

inline void swap(int32_t* a, int64_t i, int64_t j) {
  const int32_t t = a[i];
  a[i] = a[j];
  a[j] = t;
}

// the median of idx[lo], idx[mid], idx[hi] into idx[hi]: the pivot (sampling.ts's three swaps)
inline void median_to_hi(int32_t* idx, const double* key, int64_t lo, int64_t hi) {
  const int64_t mid = static_cast<int64_t>(static_cast<uint64_t>(lo + hi) >> 1);
  if (before(key, idx[mid], idx[lo])) swap(idx, mid, lo);
  if (before(key, idx[hi], idx[lo])) swap(idx, hi, lo);
  if (before(key, idx[mid], idx[hi])) swap(idx, mid, hi);
}

void select_top(int32_t* idx, const double* key, int64_t len, int64_t k) {
  int64_t lo = 0;
  int64_t hi = len - 1;
  const int64_t target = k - 1;
  if (k <= 0 || k >= len) return;
  while (hi > lo) {
    median_to_hi(idx, key, lo, hi);
    const int32_t pivot = idx[hi];
    int64_t store = lo;
    for (int64_t i = lo; i < hi; i++) {
      if (before(key, idx[i], pivot)) {
        swap(idx, i, store);
        store++;
      }
    }
    swap(idx, store, hi);
    if (store == target) return;
    if (store < target) lo = store + 1;
    else hi = store - 1;
  }
}

int64_t select_mass(int32_t* idx, const double* w, int64_t len, double target) {
  int64_t lo = 0;
  int64_t hi = len - 1;
  double acc = 0;
  while (lo <= hi) {
    median_to_hi(idx, w, lo, hi);
    const int32_t pivot = idx[hi];
    int64_t store = lo;
    double upper = 0;
    for (int64_t i = lo; i < hi; i++) {
      if (before(w, idx[i], pivot)) {
        upper += w[idx[i]];
        swap(idx, i, store);
        store++;
      }
    }
    swap(idx, store, hi);
    if (acc + upper >= target) {
      hi = store - 1;
    } else if (acc + upper + w[pivot] >= target) {
      return store + 1;
    } else {
      acc += upper + w[pivot];
      lo = store + 1;
    }
  }
  return lo < len ? lo : len;
}

double mass_of(const int32_t* idx, const double* w, int64_t len) {
  double m = 0;
  for (int64_t i = 0; i < len; i++) m += w[idx[i]];
  return m;
}

// Sampler's work arrays: the weights and the candidate ids, per thread, grown to V once
struct SampleScratch {
  std::vector<double> w;
  std::vector<int32_t> idx;
  std::vector<float> work;  // a row with its edits applied (Sampler's work array); the logits stay intact
};

// Sampler.sampleFrom
int32_t sample_from(const float* src, int64_t V, const SampleRow& p, SampleScratch& s) {
  double* w = s.w.data();
  const double m = src[argmax(src, V)];
  const double invT = 1 / p.temperature;
  // the exps first (a vector at a time), then their sum in JS's order
  for (int64_t i = 0; i < V; i++) w[i] = (static_cast<double>(src[i]) - m) * invT;
  exp_inplace(w, V);
  double Z = 0;
  for (int64_t i = 0; i < V; i++) Z += w[i];
  const int64_t topK = p.top_k > 0 && p.top_k < V ? p.top_k : 0;
  const double topP = p.top_p > 0 && p.top_p < 1 ? p.top_p : 1;
  const double minP = p.min_p > 0 ? p.min_p : 0;

  if (topK == 0 && topP == 1) {
    if (minP == 0) return draw_linear(w, V, 0, Z, p.u);
    double Zm = 0;
    for (int64_t i = 0; i < V; i++)
      if (w[i] >= minP) Zm += w[i];
    return draw_linear(w, V, minP, Zm, p.u);
  }

  int32_t* idx = s.idx.data();
  for (int64_t i = 0; i < V; i++) idx[i] = static_cast<int32_t>(i);
  int64_t len = V;
  double mass = Z;
  if (topK > 0) {
    select_top(idx, w, V, topK);
    len = topK;
    mass = mass_of(idx, w, len);
  }
  if (topP < 1) {
    len = select_mass(idx, w, len, topP * mass);
    mass = mass_of(idx, w, len);
  }
  if (minP > 0) {
    int64_t j = 0;
    for (int64_t i = 0; i < len; i++)
      if (w[idx[i]] >= minP) idx[j++] = idx[i];
    len = j;
    mass = mass_of(idx, w, len);
  }
  double u = p.u * mass;
  int32_t last = idx[0];
  for (int64_t i = 0; i < len; i++) {
    if (w[idx[i]] == 0) continue;
    last = idx[i];
    u -= w[idx[i]];
    if (u < 0) return idx[i];
  }
  return last;
}

}  // namespace

void sample_rows(const float* logits, int64_t V, const SampleRow* rows, int64_t n, int32_t* out, const LogitEdit* edits) {
  thread_local SampleScratch s;
  if (static_cast<int64_t>(s.w.size()) < V) {
    s.w.resize(V);
    s.idx.resize(V);
    s.work.resize(V);
  }
  for (int64_t i = 0; i < n; i++) {
    const float* src = logits + static_cast<int64_t>(rows[i].row) * V;
    if (rows[i].edit_count > 0) {  // Sampler.process: penalties, then the bias
      float* w = s.work.data();
      std::memcpy(w, src, sizeof(float) * V);
      for (int64_t e = rows[i].edit_begin; e < rows[i].edit_begin + rows[i].edit_count; e++) {
        const LogitEdit& d = edits[e];
        if (d.id < 0 || d.id >= V) continue;
        if (d.penalty != 0) w[d.id] = static_cast<float>(static_cast<double>(w[d.id]) - d.penalty);
        if (d.bias != 0) w[d.id] = static_cast<float>(static_cast<double>(w[d.id]) + d.bias);
      }
      src = w;
    }
    out[i] = rows[i].temperature <= 0 ? argmax(src, V) : sample_from(src, V, rows[i], s);
  }
}

}  // namespace hc::cpu
