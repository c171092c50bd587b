#!/usr/bin/python3
"""Same-machine baseline: PyTorch eager (Debian python3-torch, fp32, KV cache) on the same
checkpoint `npm run bench` uses, timed the way bench/engine-speed.ts times hybridchat
(pp: one prompt, logits of the last token; tg: greedy decode with a KV cache, batch 1).
The anchors in ../shared/BENCH_ANCHORS.md come from another machine of this class; this puts
a reference number beside ours from the very same run conditions.

  /usr/bin/python3 bench/baselines/torch_llama.py bench/out/models/110M-f32 [--threads 2] [--out FILE]

Needs Debian's python3-torch and libopenblas0-pthread (without OpenBLAS, Debian's torch falls
back to the reference BLAS and is ~30x slower). Unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for it.
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch


def load(path):
    with open(path + "/model.safetensors", "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    W = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if e["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        W[name] = torch.from_numpy(arr.reshape(e["shape"]).copy())
    return W


class Llama:
    def __init__(self, cfg, W):
        self.cfg, self.W = cfg, W
        self.C = cfg["hidden_size"]
        self.NH = cfg["num_attention_heads"]
        self.NKV = cfg.get("num_key_value_heads") or self.NH
        self.HD = cfg.get("head_dim") or self.C // self.NH
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg["rms_norm_eps"]
        theta = cfg.get("rope_theta", 10000.0)
        self.inv = 1.0 / (theta ** (torch.arange(0, self.HD, 2, dtype=torch.float32) / self.HD))
        self.head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]

    def norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rope(self, x, pos):
        f = torch.outer(pos.float(), self.inv)
        emb = torch.cat((f, f), -1)
        cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin

    def forward(self, ids, cache):
        W, T = self.W, len(ids)
        start = cache[0][0].shape[0] if cache else 0
        pos = torch.arange(start, start + T)
        x = W["model.embed_tokens.weight"][torch.tensor(ids)]
        new_cache = []
        for i in range(self.L):
            p = f"model.layers.{i}."
            h = self.norm(x, W[p + "input_layernorm.weight"])
            q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, self.NH, self.HD)
            k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, self.NKV, self.HD)
            v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, self.NKV, self.HD)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache:
                k = torch.cat((cache[i][0], k))
                v = torch.cat((cache[i][1], v))
            new_cache.append((k, v))
            rep = self.NH // self.NKV
            kk, vv = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.einsum("thd,shd->hts", q, kk) / math.sqrt(self.HD)
            S = kk.shape[0]
            mask = torch.full((T, S), float("-inf")).triu(S - T + 1)
            att = torch.softmax(att + mask, -1)
            o = torch.einsum("hts,shd->thd", att, vv).reshape(T, self.NH * self.HD)
            x = x + o @ W[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, W[p + "post_attention_layernorm.weight"])
            x = x + (torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        x = self.norm(x[-1:], W["model.norm.weight"])
        return x @ self.head.T, new_cache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    cfg = json.load(open(a.model + "/config.json"))
    m = Llama(cfg, load(a.model))
    V = cfg["vocab_size"]
    label = a.model.rstrip("/").split("/")[-1]
    results = []
    a2, b2 = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a2 @ b2
    best = min(timed(lambda: a2 @ b2) for _ in range(5))
    results.append(("sgemm N=2048 (torch.matmul -> BLAS)", 2 * 2048**3 / best / 1e9, "GFLOP/s"))
    prompt = [3 + (i * 7919) % (V - 3) for i in range(512)]
    m.forward(prompt[:16], None)
    best = min(timed(lambda: m.forward(prompt, None)) for _ in range(a.reps))
    results.append(("pp512", 512 / best, "tok/s"))
    def decode():
        logits, cache = m.forward([1], None)
        t0 = time.perf_counter()
        for _ in range(128):
            logits, cache = m.forward([int(logits.argmax())], cache)
        return time.perf_counter() - t0
    best = min(decode() for _ in range(a.reps))
    results.append(("tg128 batch 1", 128 / best, "tok/s"))
    for name, v, unit in results:
        line = {"name": f"pytorch {torch.__version__} eager {label} {name}", "value": round(v, 2), "unit": unit, "config": {"threads": a.threads, "baseline": "pytorch"}}
        print(json.dumps(line))
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(line) + "\n")


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
