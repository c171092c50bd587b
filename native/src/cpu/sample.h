// Token sampling for the rows of a forward step's logits, on the thread that ran the step,
// so a plain request's logits never wait for the JS thread (engine/engine.ts). The rule is
// engine/sampling.ts's Sampler.sample without a grammar mask (those rows stay in
// JS), reproduced operation for operation — the same fp32 → fp64 arithmetic, the
// same exp (fdlibm's, which V8's Math.exp is), the same selection order — so a seeded request
// draws the same token whichever side samples it (test/native-sampling.test.ts).
#pragma once
#include <cstdint>

namespace hc::cpu {

// One change Sampler.process makes to a logit before sampling: the penalty subtracted, then the
// logit_bias added, each in fp64 and rounded back to fp32 (a Float32Array store); 0 = none.
// Ids outside [0, V) are skipped, as process() skips them.
struct LogitEdit {
  int64_t id;
  double penalty;
  double bias;
};

// One row to sample, with the request's settings as engine/types.ts SamplingParams holds them.
struct SampleRow {
  int32_t row;         // which row of the logits
  double temperature;  // <= 0: argmax (lowest id on ties)
  int32_t top_k;       // <= 0 or >= V: off
  double top_p;        // outside (0, 1): off
  double min_p;        // <= 0: off
  double u;            // the request's uniform draw in [0, 1) (its Rng's nextFloat), used when temperature > 0
  int64_t edit_begin = 0;  // its LogitEdits: edits[edit_begin, + edit_count) of sample_rows' list
  int64_t edit_count = 0;
};

// out[i] = the token rows[i] picks from logits[rows[i].row * V, +V). Any thread may call it
// (its working arrays are the thread's own), so a step's rows can be split over a pool.
void sample_rows(const float* logits, int64_t V, const SampleRow* rows, int64_t n, int32_t* out, const LogitEdit* edits = nullptr);

// fdlibm's exp (e_exp.c), the function V8 evaluates Math.exp with, bit for bit.
double fdlibm_exp(double x);
// x[i] = fdlibm_exp(x[i]) for all n: 8 lanes a vector where the CPU has AVX-512, the same bits.
void exp_inplace(double* x, int64_t n);
// ... the AVX-512 body (sample_avx512.cc), called only where the CPU runs it
void exp_inplace_avx512(double* x, int64_t n);

}  // namespace hc::cpu
