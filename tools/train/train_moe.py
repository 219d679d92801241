"""Trains the harness's built-in MixtralForCausalLM-compatible model on CPU.

Offline tool (never imported by the harness). Uses Debian's python3-torch (1.13); point it at
OpenBLAS for speed (see ../shared/docs/environment.md). The forward pass follows HF's Mixtral
modelling code exactly: RMSNorm, rotary embeddings (rotate_half convention), GQA attention,
router softmax in fp32 then top-k renormalised, SwiGLU experts w1 (gate), w3 (up), w2 (down).

Usage:
  python3 tools/train/train_moe.py --data build/corpus --out build/train --minutes 150
  python3 tools/train/train_moe.py --export build/train/best.pt --tokenizer build/tokenizer --out models/tiny-moe
"""
import argparse, json, math, os, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(
    architectures=["MixtralForCausalLM"], model_type="mixtral",
    vocab_size=8192, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=64, hidden_act="silu",
    max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None,
    num_local_experts=8, num_experts_per_tok=2, router_aux_loss_coef=0.01, output_router_logits=False,
    tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=None,
    attention_dropout=0.0, initializer_range=0.02, use_cache=True, torch_dtype="float16",
    transformers_version="4.46.0",
)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.h * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.kv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        att = torch.softmax(att.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.h * self.hd)
        return self.o_proj(y)


class Expert(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w1 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.E, self.k = c["num_local_experts"], c["num_experts_per_tok"]
        self.gate = nn.Linear(c["hidden_size"], self.E, bias=False)
        self.experts = nn.ModuleList([Expert(c["hidden_size"], c["intermediate_size"]) for _ in range(self.E)])

    def forward(self, x):
        B, T, d = x.shape
        h = x.reshape(-1, d)
        logits = self.gate(h)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        w, idx = torch.topk(probs, self.k, dim=-1)
        w = (w / w.sum(dim=-1, keepdim=True)).to(h.dtype)
        out = torch.zeros_like(h)
        for e in range(self.E):
            tok, slot = torch.where(idx == e)
            if tok.numel() == 0:
                continue
            y = self.experts[e](h[tok]) * w[tok, slot, None]
            out.index_add_(0, tok, y)
        # Switch-style load-balancing loss (HF's load_balancing_loss_func for one layer).
        sel = F.one_hot(idx, self.E).float().sum(1).mean(0) / self.k
        aux = self.E * (sel * probs.mean(0)).sum()
        return out.view(B, T, d), aux, idx


class Block(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.block_sparse_moe = SparseMoe(c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, mask):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, mask))
        m, aux, idx = self.block_sparse_moe(self.post_attention_layernorm(x))
        return x + self.drop(m), aux, idx


class Mixtral(nn.Module):
    def __init__(self, c, dropout=0.0):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Block(c, dropout) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.drop = nn.Dropout(dropout)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.apply(self._init)

    def _init(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.c["initializer_range"])

    def forward(self, ids):
        B, T = ids.shape
        pos = torch.arange(T, dtype=torch.float)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.drop(self.embed_tokens(ids))
        aux_total, routes = 0.0, []
        for layer in self.layers:
            x, aux, idx = layer(x, cos, sin, mask)
            aux_total = aux_total + aux
            routes.append(idx)
        x = self.norm(x)
        logits = x @ self.embed_tokens.weight.t()
        return logits, aux_total / len(self.layers), routes


def batches(data, T, B, rng):
    starts = rng.integers(0, len(data) - T - 1, size=B)
    x = np.stack([data[s:s + T + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(x[:, :-1]), torch.from_numpy(x[:, 1:])


@torch.no_grad()
def evaluate(model, data, T, max_windows=None):
    """Mean next-token cross-entropy over disjoint windows of T+1 tokens (the first token of each is context)."""
    model.eval()
    n = (len(data) - 1) // T
    if max_windows:
        n = min(n, max_windows)
    total, count = 0.0, 0
    for i in range(0, n, 16):
        rows = [data[j * T: j * T + T + 1] for j in range(i, min(n, i + 16))]
        x = torch.from_numpy(np.stack(rows).astype(np.int64))
        logits, _, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def train(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_ids = np.fromfile(os.path.join(args.data, "train.bin"), dtype=np.uint16)
    val_ids = np.fromfile(os.path.join(args.data, "validation.bin"), dtype=np.uint16)
    T, B = CONFIG["max_position_embeddings"], args.batch
    model = Mixtral(CONFIG, dropout=args.dropout)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    os.makedirs(args.out, exist_ok=True)
    curve, best, bad, step = [], float("inf"), 0, 0
    if args.resume:
        # Continue from a saved state (weights, optimizer, curve); the schedule restarts with warmup.
        state = torch.load(args.resume)
        model.load_state_dict(state["model"] if "model" in state else state)
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        prev = os.path.join(os.path.dirname(args.resume), "curve.json")
        if os.path.exists(prev):
            with open(prev) as f:
                old = json.load(f)
            curve = old.get("curve", [])
            best = old.get("best_val_ce", best)
        print(f"resumed from {args.resume}; best so far {best:.4f}", flush=True)
    step0 = curve[-1]["step"] if curve else 0
    tokens0 = curve[-1]["tokens"] if curve else 0
    minutes0 = curve[-1]["minutes"] if curve else 0.0
    t0 = time.time()
    budget = args.minutes * 60
    total_steps = args.steps
    while step < total_steps:
        elapsed = time.time() - t0
        if elapsed > budget:
            print(f"time budget reached at step {step}", flush=True)
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        # Cosine decay over whichever runs out first, steps or wall-clock time, so a run cut by the
        # time budget still ends at a low learning rate.
        progress = max(step / total_steps, elapsed / budget)
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches(train_ids, T, B, rng)
        logits, aux, _ = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce + CONFIG["router_aux_loss_coef"] * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            tps = step * B * T / (time.time() - t0)
            print(f"step {step} lr {lr:.2e} train_ce {ce.item():.4f} aux {aux.item():.4f} tok/s {tps:.0f}", flush=True)
        if step % args.eval_every == 0:
            val = evaluate(model, val_ids, T, max_windows=args.val_windows)
            curve.append(dict(step=step0 + step, tokens=tokens0 + step * B * T, minutes=minutes0 + (time.time() - t0) / 60,
                              train_ce=ce.item(), val_ce=val, lr=lr))
            print(f"eval step {step} val_ce {val:.4f} (best {best:.4f})", flush=True)
            if val < best - 1e-4:
                best, bad = val, 0
                torch.save(model.state_dict(), os.path.join(args.out, "best.pt"))
            else:
                bad += 1
            torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict()), os.path.join(args.out, "last.pt"))
            with open(os.path.join(args.out, "curve.json"), "w") as f:
                json.dump(dict(curve=curve, best_val_ce=best, args=vars(args)), f, indent=1)
            if bad >= args.patience:
                print(f"early stop at step {step}", flush=True)
                break
    model.load_state_dict(torch.load(os.path.join(args.out, "best.pt")))
    full = evaluate(model, val_ids, T)
    with open(os.path.join(args.out, "curve.json"), "w") as f:
        json.dump(dict(curve=curve, best_val_ce=best, full_val_ce=full, steps=step0 + step,
                       minutes=minutes0 + (time.time() - t0) / 60, args=vars(args)), f, indent=1)
    print(f"done: best val_ce {best:.4f}, full validation ce {full:.4f}", flush=True)


# ----------------------------------------------------------------------------------- export

def hf_state_dict(model):
    """Tensor names of the published Mixtral checkpoints (model.layers.N.block_sparse_moe.experts.J.w1 ...)."""
    out = {}
    for name, t in model.state_dict().items():
        out["model." + name] = t
    return out


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    code = {"float16": "F16", "float32": "F32"}[dtype]
    for name in sorted(tensors):
        arr = tensors[name].detach().to(getattr(torch, dtype)).contiguous().numpy()
        data = arr.tobytes()
        header[name] = dict(dtype=code, shape=list(arr.shape), data_offsets=[offset, offset + len(data)])
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


@torch.no_grad()
def export(args):
    model = Mixtral(CONFIG)
    model.load_state_dict(torch.load(args.export))
    # Round-trip through the stored dtype so reference log-probs describe the exported weights exactly.
    for p in model.parameters():
        p.copy_(p.to(torch.float16).to(torch.float32))
    model.eval()
    os.makedirs(args.out, exist_ok=True)
    tensors = hf_state_dict(model)
    # Two shards (HF's sharded layout with model.safetensors.index.json) keep every file small.
    names = sorted(tensors, key=lambda n: -tensors[n].numel())
    shards = [{}, {}]
    sizes = [0, 0]
    for n in names:
        i = 0 if sizes[0] <= sizes[1] else 1
        shards[i][n] = tensors[n]
        sizes[i] += tensors[n].numel()
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(args.out, fname), part, "float16")
        for n in part:
            weight_map[n] = fname
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump(dict(metadata=dict(total_size=2 * sum(sizes)), weight_map=dict(sorted(weight_map.items()))), f, indent=2)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(args.tokenizer, name)) as src, open(os.path.join(args.out, name), "w") as dst:
            dst.write(src.read())
    # Reference log-probs of the training code on held-out windows, for the engine's parity test.
    val_ids = np.fromfile(os.path.join(args.data, "validation.bin"), dtype=np.uint16)
    rows = []
    for start, length in ((1000, 64), (50000, 256), (200000, 17)):
        ids = torch.from_numpy(val_ids[start:start + length].astype(np.int64))[None]
        logits, _, _ = model(ids)
        lp = torch.log_softmax(logits.double(), dim=-1)[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]
        rows.append(dict(ids=ids[0].tolist(), logprobs=lp.tolist()))
    with open(os.path.join(args.out, "reference-logprobs.json"), "w") as f:
        json.dump(dict(note="log p(ids[i+1] | ids[..i]) from tools/train/train_moe.py on the exported F16 weights",
                       windows=rows), f)
    if args.quick:
        print(f"exported to {args.out} (quick: no validation statistics)")
        return
    full = evaluate(model, val_ids, CONFIG["max_position_embeddings"])
    # Routing load per layer on the validation split, for the model card.
    load = np.zeros((CONFIG["num_hidden_layers"], CONFIG["num_local_experts"]))
    T = CONFIG["max_position_embeddings"]
    for i in range(0, min(len(val_ids) // T, 400), 16):
        x = torch.from_numpy(np.stack([val_ids[j * T:(j + 1) * T] for j in range(i, min(i + 16, len(val_ids) // T))]).astype(np.int64))
        _, _, routes = model(x)
        for l, idx in enumerate(routes):
            load[l] += np.bincount(idx.reshape(-1).numpy(), minlength=CONFIG["num_local_experts"])
    load = load / load.sum(axis=1, keepdims=True)
    with open(os.path.join(args.out, "export-stats.json"), "w") as f:
        json.dump(dict(validation_ce_f16=full, routing_load=load.tolist()), f, indent=1)
    print(f"exported to {args.out}; validation ce with f16 weights {full:.4f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="build/corpus")
    ap.add_argument("--out", default="build/train")
    ap.add_argument("--minutes", type=float, default=150)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--val-windows", type=int, default=400)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--resume", help="state file (last.pt or best.pt) to continue from")
    ap.add_argument("--export")
    ap.add_argument("--quick", action="store_true", help="export without the full validation statistics")
    ap.add_argument("--tokenizer", default="build/tokenizer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.export:
        export(args)
    else:
        train(args)
