// llama.cpp's reference quantizers, with its rounding: roundf (ties away from zero)
// of x/d for Q8_0, truncation of x/d + 8.5 for Q4_0, and d stored as fp16; Q4_K's search
// of scale and min per sub-block (written from ggml-quants.c's make_qkx2_quants).
#include "quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace hc {

void quantize_row_q8_0(const float* x, void* out, int64_t n) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < n / kQK; i++, x += kQK) {
    float amax = 0.f;
    for (int j = 0; j < kQK; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK; j++) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_row_q4_0(const float* x, void* out, int64_t n) {
  BlockQ4_0* y = static_cast<BlockQ4_0*>(out);
  for (int64_t i = 0; i < n / kQK; i++, x += kQK) {
    float amax = 0.f, max = 0.f;  // the value of largest magnitude, with its sign
    for (int j = 0; j < kQK; j++)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; j++) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

namespace {

// Round to nearest, ties to even (llama.cpp's nearest_int, for the values quantizers see).
inline int nearest_int(float v) { return static_cast<int>(std::nearbyintf(v)); }

// The affine fit w ≈ scale·L − minv of n values with L in [0, nmax], least squares weighted
// by `wt`: start from the min/max grid, then try nstep + 1 grids of nmax + rmin + rdelta·s
// steps over [min, max], each with the best scale and offset for its L in closed form, and
// keep the fit with the smallest weighted squared error. min is never above 0 (the offset
// only ever subtracts). Returns scale; *minv = −min.
float fit_scale_min(int n, int nmax, const float* x, const float* wt, uint8_t* L, float* minv, float rmin,
                    float rdelta, int nstep) {
  float mn = x[0], mx = x[0], sum_w = wt[0], sum_x = wt[0] * x[0];
  for (int i = 1; i < n; i++) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    sum_w += wt[i];
    sum_x += wt[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    for (int i = 0; i < n; i++) L[i] = 0;
    *minv = -mn;
    return 0.f;
  }
  float iscale = nmax / (mx - mn), scale = 1 / iscale, best = 0;
  for (int i = 0; i < n; i++) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax));
    const float e = scale * L[i] + mn - x[i];
    best += wt[i] * e * e;
  }
  uint8_t Laux[32];
  for (int s = 0; s <= nstep; s++) {
    iscale = (rmin + rdelta * s + nmax) / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - mn)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      sum_l += wt[i] * l;
      sum_l2 += wt[i] * l * l;
      sum_xl += wt[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; i++) {
      const float e = this_scale * Laux[i] + this_min - x[i];
      err += wt[i] * e * e;
    }
    if (err < best) {
      for (int i = 0; i < n; i++) L[i] = Laux[i];
      best = err;
      scale = this_scale;
      mn = this_min;
    }
  }
  *minv = -mn;
  return scale;
}

}  // namespace

void quantize_row_q4_k(const float* x, void* out, int64_t n) {
  BlockQ4_K* y = static_cast<BlockQ4_K*>(out);
  for (int64_t i = 0; i < n / kQKK; i++, x += kQKK) {
    uint8_t L[kQKK];
    float scales[8], mins[8], wt[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
      // weight each value by the sub-block's rms plus its own magnitude: large weights matter more
      float sum_x2 = 0;
      for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; l++) wt[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = fit_scale_min(32, 15, x + 32 * j, wt, L + 32 * j, &mins[j], -1.f, 0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    BlockQ4_K& b = y[i];
    for (int k = 0; k < 12; k++) b.scales[k] = 0;
    for (int j = 0; j < 8; j++) {
      const int ls = std::min(63, nearest_int(inv_scale * scales[j]));
      const int lm = std::min(63, nearest_int(inv_min * mins[j]));
      if (j < 4) {
        b.scales[j] = static_cast<uint8_t>(ls);
        b.scales[j + 4] = static_cast<uint8_t>(lm);
      } else {
        b.scales[j + 4] = static_cast<uint8_t>((ls & 15) | ((lm & 15) << 4));
        b.scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        b.scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    b.d = f32_to_f16(max_scale / 63.f);
    b.dmin = f32_to_f16(max_min / 63.f);
    // requantize against the 6-bit scales actually stored
    for (int j = 0; j < 8; j++) {
      int sc, m;
      q4k_scale_min(b.scales, j, sc, m);
      const float d = f16_to_f32(b.d) * sc;
      if (d == 0.f) continue;
      const float dm = f16_to_f32(b.dmin) * m;
      for (int l = 0; l < 32; l++) L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, 15));
    }
    for (int p = 0; p < 4; p++)
      for (int l = 0; l < 32; l++) b.qs[32 * p + l] = static_cast<uint8_t>(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
  }
}

void dequantize_row_q8_0(const void* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = q8_0_at(src, i);
}

void dequantize_row_q4_0(const void* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = q4_0_at(src, i);
}

}  // namespace hc

namespace hc {
void dequantize_row_q4_k(const void* src, float* out, int64_t n) {
  const BlockQ4_K* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQKK; i++, out += kQKK) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; j++) {
      int sc, m;
      q4k_scale_min(b[i].scales, j, sc, m);
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      for (int l = 0; l < 32; l++) out[32 * j + l] = ds * static_cast<float>(j % 2 ? q[l] >> 4 : q[l] & 15) - dm;
    }
  }
}
}  // namespace hc

namespace hc {
// Each half of 128 weights: ql's 64 bytes give weights [0, 32) and [32, 64) their low nibbles,
// [64, 96) and [96, 128) their high ones; qh's 32 bytes hold two bits for each of the four.
float q6_k_at(const void* base, int64_t idx) {
  const uint8_t* b = static_cast<const uint8_t*>(base) + idx / 256 * 210;
  const int i = static_cast<int>(idx % 256), half = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
  const uint8_t* ql = b + 64 * half;
  const uint8_t* qh = b + 128 + 32 * half;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
  const int lo = quarter % 2 ? ql[l + 32] : ql[l];
  const int q = ((quarter < 2 ? lo & 15 : lo >> 4) | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
  uint16_t d;
  std::memcpy(&d, b + 208, 2);
  return f16_to_f32(d) * static_cast<float>(sc[l / 16 + 2 * quarter]) * static_cast<float>(q);
}

void dequantize_row_q6_k(const void* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = q6_k_at(src, i);
}
}  // namespace hc
