#!/usr/bin/env python3
"""The same training step as roformer-bench, in PyTorch eager, for a like-for-like
comparison (roformer-bench --vs-pytorch runs this with the same configurations).

RoFormerV2 and the RoBERTa-style baseline are written exactly as native/modules.cpp
and native/baseline.cpp build them; the step is forward, MLM loss at the target
positions (or, with head "full", at every position as common implementations do),
backward, global-norm clipping and AdamW.

With "compile": true (torch >= 2), forward and loss run under torch.compile (the default
mode), and each step has the same number of MLM targets, ceil(0.15 * batch * seq) rounded
up to a multiple of 8, as the native static step has, so that the compiled graph is
traced once rather than once per target count.

Usage: python3 pytorch_bench.py '<json list of configurations>'   → JSON on stdout
"""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def attention(q, k, v, keep, p, training):
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p if training else 0.0)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~keep, float("-inf"))
    probs = scores.softmax(-1, dtype=torch.float32).to(q.dtype)
    return F.dropout(probs, p, training) @ v


def rotary_tables(seq, head_dim, device):
    theta = 10000.0 ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), theta).repeat_interleave(2, -1)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), -1).flatten(-2)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def rms_norm(x, eps=1e-12):
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, d, heads, p, bias):
        super().__init__()
        self.heads, self.p = heads, p
        # q, k and v from one packed projection, as the addon computes them (native/packed_qkv.h)
        self.qkv, self.output = nn.Linear(d, 3 * d, bias=bias), nn.Linear(d, d, bias=bias)

    def forward(self, x, keep, cos=None, sin=None):
        b, s, d = x.shape
        q, k, v = (t.transpose(1, 2) for t in self.qkv(x).view(b, s, 3, self.heads, -1).unbind(2))
        if cos is not None:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.output(attention(q, k, v, keep, self.p, self.training).transpose(1, 2).reshape(b, s, d))


class RoFormerV2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = SelfAttention(c["hidden_size"], c["num_attention_heads"], 0.1, False)
        self.intermediate = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
        self.output = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, keep, cos, sin):
        x = rms_norm(x + self.dropout(self.attention(x, keep, cos, sin)))
        return rms_norm(x + self.dropout(self.output(F.relu(self.intermediate(x)))))


class RoFormerV2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(2, c["hidden_size"])
        self.layer = nn.ModuleList(RoFormerV2Block(c) for _ in range(c["num_hidden_layers"]))
        self.dropout = nn.Dropout(0.1)

    def forward(self, ids):
        keep = ids.ne(0)[:, None, None, :]
        x = rms_norm(self.dropout(self.word_embeddings(ids) + self.token_type_embeddings(torch.zeros_like(ids))))
        cos, sin = rotary_tables(ids.size(1), self.c["hidden_size"] // self.c["num_attention_heads"], ids.device)
        for block in self.layer:
            x = block(x, keep, cos, sin)
        return x

    def mlm_logits(self, h):
        return F.linear(h, self.word_embeddings.weight)


class BaselineBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.attention = SelfAttention(d, c["num_attention_heads"], 0.1, True)
        self.attention_norm = nn.LayerNorm(d, eps=1e-12)
        self.intermediate = nn.Linear(d, c["intermediate_size"])
        self.output = nn.Linear(c["intermediate_size"], d)
        self.output_norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, keep):
        x = self.attention_norm(x + self.dropout(self.attention(x, keep)))
        return self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


class RobertaBaseline(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], d)
        self.position_embeddings = nn.Embedding(c.get("max_position_embeddings", 512), d)
        self.token_type_embeddings = nn.Embedding(2, d)
        self.embeddings_norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.layer = nn.ModuleList(BaselineBlock(c) for _ in range(c["num_hidden_layers"]))
        self.lm_dense = nn.Linear(d, d)
        self.lm_norm = nn.LayerNorm(d, eps=1e-12)
        self.lm_bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, ids):
        keep = ids.ne(0)[:, None, None, :]
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings(torch.zeros_like(ids))
        x = self.dropout(self.embeddings_norm(x))
        for block in self.layer:
            x = block(x, keep)
        return x

    def mlm_logits(self, h):
        return F.linear(self.lm_norm(F.gelu(self.lm_dense(h))), self.word_embeddings.weight, self.lm_bias)


def mlm_loss(model, ids, positions, labels, full_head):
    hidden = model(ids)
    if full_head:
        # the common implementation: logits at every position, ignore_index elsewhere
        target = torch.full((ids.numel(),), -100, device=ids.device, dtype=torch.long)
        target[positions] = labels
        logits = model.mlm_logits(hidden.reshape(-1, hidden.size(-1))).float()
        return F.cross_entropy(logits, target, ignore_index=-100)
    logits = model.mlm_logits(hidden.reshape(-1, hidden.size(-1)).index_select(0, positions)).float()
    return F.cross_entropy(logits, labels)


def run(cfg):
    torch.manual_seed(0)
    device = torch.device(cfg["device"])
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    model_config = cfg["config"]
    model = (RoFormerV2 if cfg["model"] == "roformer-v2" else RobertaBaseline)(model_config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    batch, seq, vocab = cfg["batch"], cfg["seq"], model_config["vocab_size"]
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg["dtype"])
    full_head = cfg.get("head") == "full"
    compiled = bool(cfg.get("compile"))
    if compiled and not hasattr(torch, "compile"):
        raise SystemExit(f"torch.compile needs torch >= 2, this is {torch.__version__}")
    if compiled:
        # A fresh trace per configuration, with static shapes: after two lengths in one
        # process, dynamo would otherwise switch to a slower dynamic-shape graph.
        torch._dynamo.reset()
    loss_fn = torch.compile(mlm_loss, dynamic=False) if compiled else mlm_loss
    slots = -(-math.ceil(0.15 * batch * seq) // 8) * 8
    times = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        # fresh random inputs every step, 15% targets, as the native harness makes them
        ids = torch.randint(5, vocab, (batch, seq), device=device)
        if compiled:
            positions = torch.randperm(batch * seq, device=device)[: min(slots, batch * seq)]
        else:
            positions = torch.nonzero(torch.rand(batch * seq, device=device) < 0.15).flatten()
        labels = ids.flatten()[positions]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = loss_fn(model, ids, positions, labels, full_head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()  # one host sync per step, as the native trainer does
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= cfg["warmup"]:
            times.append((time.perf_counter() - start) * 1000)
    return {
        "model": cfg["model"],
        "seq": seq,
        "batch": batch,
        "dtype": cfg["dtype"],
        "head": "full" if full_head else "targets",
        "compiled": compiled,
        "msPerStep": statistics.median(times),
        "msSamples": times,
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        # the process's peak resident memory: meaningful when this is the only
        # configuration the process ran (roformer-bench --memory runs one per process)
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


if __name__ == "__main__":
    configs = json.loads(sys.argv[1])
    print(json.dumps([run(c) for c in configs]))
