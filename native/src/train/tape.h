// What one grad trainForward keeps for its trainBackward, in the model's Exec memory
// (exec_train.h: host arrays on the CPU, device memory on a GPU). Each layer's input is kept
// always; the rest of a layer (LayerTape) is kept for every layer, or — with
// activation checkpointing — for one layer at a time, recomputed from its input
// during the backward.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "../exec_train.h"
#include "adapter.h"

namespace hc {

struct LayerTape {
  Buf xn1;           // [T,C] attn-normed input
  Buf q_raw, k_raw;  // [T,QD],[T,KD] before the Qwen3 q/k norm (only with qk_norm)
  Buf q, k, v;       // attention inputs (after norm and RoPE)
  Buf att, lse;      // [T,QD] attention output, [T,NH] its logsumexp
  Buf x_mid, xn2;    // [T,C] after the attention residual, and mlp-normed
  Buf gate, up, h;   // [T,I] pre-activations and swiglu output
  std::array<Buf, kTargets> u;     // LoRA x·Aᵀ [T,r] per targeted linear
  std::array<Buf, kTargets> mask;  // dropout multipliers [T,in] (dropout > 0 only)
  // tensor parallelism (rank.h): each rank's own tape of the layer, in its memory — its copy
  // of xn1, x_mid, xn2 (the replicated stream), its shard of q…h, u and its columns' masks
  std::vector<LayerTape> ranks;
};

struct Tape {
  bool valid = false;  // a grad forward ran and no backward has consumed it yet
  bool checkpoint = false, values = false;
  std::vector<int32_t> tokens, targets, counts;  // host
  Arr<int32_t> tokens_d, targets_d;               // the same in the Exec's memory
  const Adapter* adapter = nullptr;  // the batch's adapter (its LoRA and value head)
  bool dropout = false;              // LoRA dropout active in this forward
  uint64_t counter = 0;              // the adapter's dropout counter for this forward
  Buf cos, sin;       // RoPE tables [T, HD/2]
  std::vector<Buf> rank_cos, rank_sin;  // tensor parallelism: rank r > 0's copy of them, in its memory
  std::vector<Buf> inputs;  // [L] each layer's input [T,C]
  std::vector<LayerTape> layers;            // [L], or [1] with checkpointing
  Buf x_final, xf;           // last layer's output and its final norm [T,C]
};

// Working buffers of trainForward/trainBackward. They, and the tapes, keep their memory
// from step to step: a training loop would otherwise fault in (and zero) every activation
// page again each step, a fifth of the step time on a 110M model. setTrainable(null)
// gives it all back.
struct TrainScratch {
  Buf logits;                  // head rows [R,V], forward and backward
  Buf dxf;                     // [T,C] the upstream gradient, layer by layer
  Buf layer_out;               // [T,C] recomputed layer output (checkpointing)
  Buf dh, dup, dxn;            // layer backward: [T,I],[T,I],[T,C]
  Buf datt, dq, dk, dv;        // [T,QD],[T,QD],[T,KD],[T,KD]
  Buf du, dropped, dxd;        // LoRA: [T,r], dropout(x) [T,in], its gradient [T,in]
  Buf logp, dlogp, values, dvalues;  // [T] the boundary's vectors, where the Exec computes
  Arr<int32_t> pos;                  // [T] positions 0..n−1 of each sequence
};

}  // namespace hc
