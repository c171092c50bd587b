#!/usr/bin/python3
"""Same-machine training baseline for bench/train-speed.ts: PyTorch eager autograd, fp32,
forward + backward + torch.optim.AdamW over B sequences of T tokens of the same checkpoint,
full fine-tuning or LoRA (rank 8 on every linear layer, base frozen), 2 threads.

  /usr/bin/python3 bench/baselines/torch_train.py bench/out/models/110M-f32 --batch 4 --seq 256
  /usr/bin/python3 bench/baselines/torch_train.py ../shared/models/stories260K --batch 32 --seq 256

Same environment notes as torch_llama.py (Debian python3-torch + OpenBLAS; unset
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE).
"""
import argparse
import json
import math
import time

import torch

from torch_llama import load

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


class TrainLlama:
    def __init__(self, cfg, W, lora_rank):
        self.cfg, self.W = cfg, W
        self.C = cfg["hidden_size"]
        self.NH = cfg["num_attention_heads"]
        self.NKV = cfg.get("num_key_value_heads") or self.NH
        self.HD = cfg.get("head_dim") or self.C // self.NH
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg["rms_norm_eps"]
        theta = cfg.get("rope_theta", 10000.0)
        self.inv = 1.0 / (theta ** (torch.arange(0, self.HD, 2, dtype=torch.float32) / self.HD))
        self.tied = bool(cfg.get("tie_word_embeddings"))
        self.lora = {}
        if lora_rank > 0:
            g = torch.Generator().manual_seed(0)
            for i in range(self.L):
                for name in LINEARS:
                    w = W[f"model.layers.{i}.{name}.weight"]
                    bound = 1 / math.sqrt(w.shape[1])
                    a = (torch.rand(lora_rank, w.shape[1], generator=g) * 2 - 1) * bound
                    self.lora[f"{i}.{name}"] = (a.requires_grad_(), torch.zeros(w.shape[0], lora_rank, requires_grad=True))
            self.scale = 2.0
        else:
            for t in W.values():
                t.requires_grad_()

    def params(self):
        if self.lora:
            return [p for ab in self.lora.values() for p in ab]
        return list(self.W.values())

    def lin(self, x, i, name):
        y = x @ self.W[f"model.layers.{i}.{name}.weight"].T
        ab = self.lora.get(f"{i}.{name}")
        if ab:
            y = y + self.scale * ((x @ ab[0].T) @ ab[1].T)
        return y

    def norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rope(self, x, pos):
        f = torch.outer(pos.float(), self.inv)
        emb = torch.cat((f, f), -1)
        cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin

    def loss(self, ids):
        W = self.W
        B, T = ids.shape
        pos = torch.arange(T)
        x = W["model.embed_tokens.weight"][ids]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for i in range(self.L):
            p = f"model.layers.{i}."
            h = self.norm(x, W[p + "input_layernorm.weight"])
            q = self.rope(self.lin(h, i, "self_attn.q_proj").view(B, T, self.NH, self.HD), pos)
            k = self.rope(self.lin(h, i, "self_attn.k_proj").view(B, T, self.NKV, self.HD), pos)
            v = self.lin(h, i, "self_attn.v_proj").view(B, T, self.NKV, self.HD)
            rep = self.NH // self.NKV
            k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
            att = torch.softmax(torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(self.HD) + mask, -1)
            o = torch.einsum("bhts,bshd->bthd", att, v).reshape(B, T, self.NH * self.HD)
            x = x + self.lin(o, i, "self_attn.o_proj")
            h = self.norm(x, W[p + "post_attention_layernorm.weight"])
            x = x + self.lin(torch.nn.functional.silu(self.lin(h, i, "mlp.gate_proj")) * self.lin(h, i, "mlp.up_proj"), i, "mlp.down_proj")
        x = self.norm(x, W["model.norm.weight"])
        head = W["model.embed_tokens.weight"] if self.tied else W["lm_head.weight"]
        logits = x[:, :-1] @ head.T
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model + "/config.json"))
    V = cfg["vocab_size"]
    label = a.model.rstrip("/").split("/")[-1]
    for mode, rank in (("lora", 8), ("full", 0)):
        m = TrainLlama(cfg, load(a.model), rank)
        opt = torch.optim.AdamW(m.params(), lr=1e-5, weight_decay=0.0)
        best = float("inf")
        for s in range(a.steps + 1):
            ids = torch.tensor([[3 + (i * 7919 + (b + s) * 104729) % (V - 3) for i in range(a.seq)] for b in range(a.batch)])
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            m.loss(ids).backward()
            opt.step()
            if s > 0:  # the first step is warm-up
                best = min(best, time.perf_counter() - t0)
        line = {"name": f"pytorch {torch.__version__} eager {label} train {mode} {a.batch}x{a.seq}", "value": round(a.batch * a.seq / best, 2), "unit": "tok/s", "config": {"threads": a.threads, "baseline": "pytorch"}}
        print(json.dumps(line), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
