#!/usr/bin/env python3
"""PyTorch eager peer of `npm run bench:scale` (bench/scale.bench.ts).

Loads a HuggingFace MoE checkpoint (Mixtral, OLMoE, Qwen3-MoE, DeepSeek-V2) from its safetensors
files with nothing but json + numpy (no `safetensors`, no `transformers`), casts every weight to
float32 (as the scoring graph computes), and runs one forward the way transformers' eager modelling
code does, so the engine and this peer read identical weights and tokens:
- attention: explicit QK^T + causal mask + softmax + V (eager_attention_forward), GQA by repeat;
  OLMoE q/k RMSNorm over the whole projection, Qwen3 per head; DeepSeek-V2 MLA with YaRN rotary on
  consecutive pairs and the softmax scale times yarn_get_mscale(factor, mscale_all_dim)^2
  (modeling_deepseek_v2.py / Hub modeling_deepseek.py).
- sparse MoE block as MixtralSparseMoeBlock / OlmoeSparseMoeBlock / Qwen3MoeSparseMoeBlock /
  DeepseekV2Moe: softmax router, top-k, optional renormalisation, then a loop over the experts that
  were hit: index_select the routed rows, SwiGLU, scale by the routing weight, index_add_ back.
- final RMSNorm, lm_head over every position, log_softmax, the log-probability of each next token.

Usage: torch_moe.py --model DIR --tokens FILE (int64 little-endian) --threads N
                    [--warmup N] [--out logprobs.f32] [--load-only]
       torch_moe.py --model DIR --requests FILE.json --threads N [--out PREFIX]
  (the harness's scoring requests, scored per choice as lm-eval's HF backend does; --out writes
   PREFIX.<task> with every continuation token's log-probability in request order)
Prints progress lines and, last, one JSON object: loadSeconds, warmupSeconds, forwardSeconds,
tokensPerSecond, peakRssBytes (VmHWM), baselineRssBytes (after imports), blas (libraries mapped).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np


def vm_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return 0


def emit(obj):
    print(json.dumps(obj), flush=True)


args = argparse.ArgumentParser()
args.add_argument('--model', required=True)
args.add_argument('--tokens')
args.add_argument('--cast-on-use', action='store_true', help='keep half-precision weights as stored and cast each to float32 when read')
args.add_argument('--requests', help='JSON {batchTokens, tasks: {name: {requests, warmup}}}: score them as lm-eval HFLM does')
args.add_argument('--threads', type=int, default=1)
args.add_argument('--warmup', type=int, default=0)
args.add_argument('--out')
args.add_argument('--load-only', action='store_true')
opt = args.parse_args()

import torch  # noqa: E402  (after argparse so --help is instant)

torch.set_num_threads(opt.threads)
torch.set_grad_enabled(False)
baseline = vm_kb('VmRSS')

# ---- safetensors without the package: 8-byte header length, JSON header, raw little-endian data.
NP_DTYPES = {'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16}


class CastOnUse(dict):
    """Weights kept as stored (bfloat16 / float16 views of the mapped file) and cast to float32 each
    time they are read, as the engine's mapped graph casts them per layer at run time: the peer's
    resident size is then the checkpoint once, so full-depth models fit where float32 copies do not."""

    def __getitem__(self, key):
        v = dict.__getitem__(self, key)
        if isinstance(v, torch.Tensor):
            return v
        # numpy's widening is ~4x faster here than torch 1.13's bfloat16 .float() (measured on this CPU).
        return torch.from_numpy((v.astype(np.uint32) << 16).view(np.float32) if v.dtype == np.uint16 else v.astype(np.float32))


def read_tensors(model_dir, cast_on_use=False):
    index = os.path.join(model_dir, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index) else ['model.safetensors']
    out = CastOnUse() if cast_on_use else {}
    for name in files:
        path = os.path.join(model_dir, name)
        raw = np.memmap(path, dtype=np.uint8, mode='r')
        n = int.from_bytes(bytes(raw[:8]), 'little')
        header = json.loads(bytes(raw[8:8 + n]).decode('utf8'))
        base = 8 + n
        for key, e in header.items():
            if key == '__metadata__':
                continue
            begin, end = e['data_offsets']
            a = np.frombuffer(raw, dtype=NP_DTYPES[e['dtype']], count=(end - begin) // np.dtype(NP_DTYPES[e['dtype']]).itemsize, offset=base + begin)
            if cast_on_use and e['dtype'] in ('BF16', 'F16'):
                dict.__setitem__(out, key, a.reshape(e['shape']))
                continue
            if e['dtype'] == 'BF16':
                f = (a.astype(np.uint32) << 16).view(np.float32)
            else:
                f = a.astype(np.float32)
            out[key] = torch.from_numpy(f.reshape(e['shape']))
        del raw
    return out


t0 = time.perf_counter()
cfg = json.load(open(os.path.join(opt.model, 'config.json')))
W = read_tensors(opt.model, opt.cast_on_use)
arch = cfg['architectures'][0]
family = {'MixtralForCausalLM': 'mixtral', 'OlmoeForCausalLM': 'olmoe', 'Qwen3MoeForCausalLM': 'qwen3_moe',
          'DeepseekV2ForCausalLM': 'deepseek_v2'}[arch]
L = cfg['num_hidden_layers']
d = cfg['hidden_size']
H = cfg['num_attention_heads']
KV = cfg.get('num_key_value_heads', H)
eps = cfg['rms_norm_eps']
theta = cfg.get('rope_theta', 10000.0)
load_seconds = time.perf_counter() - t0
emit({'phase': 'load', 'seconds': load_seconds})


def rms(x, w, e):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + e))


def lin(x, name):
    return x @ W[name + '.weight'].T


def swiglu(x, prefix, names=('gate_proj', 'up_proj', 'down_proj')):
    g, u, dn = names
    return lin(torch.nn.functional.silu(lin(x, f'{prefix}.{g}')) * lin(x, f'{prefix}.{u}'), f'{prefix}.{dn}')


def default_inv_freq(dim):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def get_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def yarn(dim):
    """inv_freq, cos/sin factor and softmax mscale^2 of rope_scaling type yarn (modeling_rope_utils)."""
    rs = cfg['rope_scaling']
    factor = rs['factor']
    orig = rs['original_max_position_embeddings']
    pos_freqs = theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    attn_factor = get_mscale(factor, rs.get('mscale', 1)) / get_mscale(factor, rs.get('mscale_all_dim', 0)) \
        if rs.get('mscale') and rs.get('mscale_all_dim') else get_mscale(factor)
    beta_fast, beta_slow = rs.get('beta_fast', 32), rs.get('beta_slow', 1)

    def corr(rot):
        return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(theta))
    low, high = max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    inv = (1 / (factor * pos_freqs)) * (1 - extrapolation) + (1 / pos_freqs) * extrapolation
    m_all = rs.get('mscale_all_dim')
    return inv, attn_factor, (get_mscale(factor, m_all) ** 2 if m_all else 1.0)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def attend(q, k, v, scale, mask):
    """eager_attention_forward: q [B, H, T, dq], k [B, H, T, dq], v [B, H, T, dv] -> [B, T, H*dv]."""
    s = (q @ k.transpose(-1, -2)) * scale + mask
    p = torch.softmax(s, dim=-1, dtype=torch.float32)
    o = p @ v
    return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def gqa_attention(i, x, cos, sin, mask):
    p = f'model.layers.{i}.self_attn'
    hd = cfg.get('head_dim') or d // H
    B, T = x.shape[0], x.shape[1]
    q, k, v = lin(x, p + '.q_proj'), lin(x, p + '.k_proj'), lin(x, p + '.v_proj')
    if family == 'olmoe':
        q, k = rms(q, W[p + '.q_norm.weight'], eps), rms(k, W[p + '.k_norm.weight'], eps)
    q, k, v = q.view(B, T, H, hd).transpose(1, 2), k.view(B, T, KV, hd).transpose(1, 2), v.view(B, T, KV, hd).transpose(1, 2)
    if family == 'qwen3_moe':
        q, k = rms(q, W[p + '.q_norm.weight'], eps), rms(k, W[p + '.k_norm.weight'], eps)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
    return lin(attend(q, k, v, hd ** -0.5, mask), p + '.o_proj')


def mla_attention(i, x, rope, mask):
    p = f'model.layers.{i}.self_attn'
    nope, rd, vd, r = cfg['qk_nope_head_dim'], cfg['qk_rope_head_dim'], cfg['v_head_dim'], cfg['kv_lora_rank']
    B, T = x.shape[0], x.shape[1]
    cos, sin, mscale2 = rope
    q = lin(x, p + '.q_proj').view(B, T, H, nope + rd).transpose(1, 2)
    q_nope, q_pe = q[..., :nope], q[..., nope:]
    ckv = lin(x, p + '.kv_a_proj_with_mqa')
    latent, k_pe = ckv[..., :r], ckv[..., r:].view(B, T, 1, rd).transpose(1, 2)
    kv = lin(rms(latent, W[p + '.kv_a_layernorm.weight'], 1e-6), p + '.kv_b_proj').view(B, T, H, nope + vd).transpose(1, 2)
    k_nope, v = kv[..., :nope], kv[..., nope:]

    def rot_pairs(t):  # view_as_complex on consecutive pairs (2i, 2i+1)
        a, b = t[..., 0::2], t[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    q_pe, k_pe = rot_pairs(q_pe), rot_pairs(k_pe).expand(B, H, T, rd)
    qf, kf = torch.cat((q_nope, q_pe), -1), torch.cat((k_nope, k_pe), -1)
    scale = (nope + rd) ** -0.5 * mscale2
    return lin(attend(qf, kf, v, scale, mask), p + '.o_proj')


def sparse_moe(i, x):
    """Router + HF expert loop (index_select rows of each expert hit, SwiGLU, weight, index_add_) over [B, T, d]."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    if family == 'mixtral':
        p, names, E, norm = f'model.layers.{i}.block_sparse_moe', ('w1', 'w3', 'w2'), cfg['num_local_experts'], True
    elif family == 'deepseek_v2':
        p, names, E, norm = f'model.layers.{i}.mlp', ('gate_proj', 'up_proj', 'down_proj'), cfg['n_routed_experts'], False
    else:
        p, names, E, norm = f'model.layers.{i}.mlp', ('gate_proj', 'up_proj', 'down_proj'), cfg['num_experts'], cfg.get('norm_topk_prob', False)
    k = cfg['num_experts_per_tok']
    probs = torch.softmax(lin(x, p + '.gate'), dim=-1, dtype=torch.float32)
    weights, selected = torch.topk(probs, k, dim=-1)
    if norm:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if family == 'deepseek_v2':
        weights = weights * cfg.get('routed_scaling_factor', 1.0)
    out = torch.zeros_like(x)
    mask = torch.nn.functional.one_hot(selected, num_classes=E).permute(2, 1, 0)
    for e in torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero().flatten().tolist():
        idx, rows = torch.where(mask[e])
        cur = x.index_select(0, rows)
        y = swiglu(cur, f'{p}.experts.{e}', names) * weights[rows, idx, None]
        out.index_add_(0, rows, y)
    if family == 'deepseek_v2' and cfg.get('n_shared_experts'):
        out = out + swiglu(x, p + '.shared_experts')
    return out.reshape(shape)


def is_moe(i):
    if family == 'deepseek_v2':
        return i >= cfg.get('first_k_dense_replace', 0) and i % cfg.get('moe_layer_freq', 1) == 0
    if family == 'qwen3_moe':
        return i not in cfg.get('mlp_only_layers', []) and (i + 1) % cfg.get('decoder_sparse_step', 1) == 0
    return True


def hidden_states(ids):
    """Final-norm hidden states [B, T, d] of right-padded rows [B, T] (causal: padding is never attended)."""
    T = ids.shape[1]
    pos = torch.arange(T, dtype=torch.float32)
    mask = torch.full((T, T), float('-inf')).triu(1)
    if family == 'deepseek_v2':
        rd = cfg['qk_rope_head_dim']
        if cfg.get('rope_scaling'):
            inv, af, m2 = yarn(rd)
        else:
            inv, af, m2 = default_inv_freq(rd), 1.0, 1.0
        f = pos[:, None] * inv[None, :]
        rope = (f.cos() * af, f.sin() * af, m2)
    else:
        hd = cfg.get('head_dim') or d // H
        f = pos[:, None] * default_inv_freq(hd)[None, :]
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos(), emb.sin()
    x = W['model.embed_tokens.weight'][ids]
    for i in range(L):
        p = f'model.layers.{i}'
        h = rms(x, W[p + '.input_layernorm.weight'], eps)
        x = x + (mla_attention(i, h, rope, mask) if family == 'deepseek_v2' else gqa_attention(i, h, cos, sin, mask))
        h = rms(x, W[p + '.post_attention_layernorm.weight'], eps)
        x = x + (sparse_moe(i, h) if is_moe(i) else swiglu(h, p + '.mlp'))
    return rms(x, W['model.norm.weight'], eps)


def forward(ids):
    """log p of each next token of one sequence [T] -> [T - 1]."""
    x = hidden_states(ids[None])[0]
    logits = x[:-1] @ W['lm_head.weight'].T
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, ids[1:, None]).flatten()


def blas_libraries():
    with open('/proc/self/maps') as f:
        return sorted({line.split()[-1] for line in f if 'blas' in line.lower() or 'lapack' in line.lower() or 'mkl' in line.lower()})


def lm_eval_pairs(requests):
    """The (context, continuation) pairs lm-eval's HF backend scores for the harness's requests: one
    per choice (a request's branches share its prefix only in the harness), and a rolling window as
    (its context tokens, its scored tokens)."""
    pairs = []
    for r in requests:
        if r['branches']:
            pairs += [(r['prefix'], b) for b in r['branches']]
        else:
            cut = max(1, r.get('scorePrefixFrom') or len(r['prefix']))
            pairs.append((r['prefix'][:cut], r['prefix'][cut:]))
    return pairs


def score_like_hflm(pairs, batch_tokens):
    """lm-eval's HFLM._loglikelihood_tokens on CPU: the model input is (context + continuation)[:-1]
    (requests here already fit max_length); identical inputs run once (its logits cache and
    group_by="contexts" reuse at most that); inputs sorted longest first and batched right-padded, here
    by the same padded-token budget as the harness's batches (rows x width <= batch_tokens) rather than
    a fixed row count; the whole batch's logits go through log_softmax; the continuation's
    log-probabilities are read at its positions. Returns per-pair lists of token log-probabilities."""
    inputs = {}
    for ctx, cont in pairs:
        inputs.setdefault(tuple((ctx + cont)[:-1]), None)
    order = sorted(inputs, key=lambda t: (-len(t), t))
    batches, cur = [], []
    for t in order:
        if cur and len(cur[0]) * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(t)
    if cur:
        batches.append(cur)
    for batch in batches:
        width = len(batch[0])
        ids = torch.zeros((len(batch), width), dtype=torch.int64)
        for row, t in enumerate(batch):
            ids[row, :len(t)] = torch.tensor(t, dtype=torch.int64)
        logp = torch.log_softmax(hidden_states(ids) @ W['lm_head.weight'].T, dim=-1)
        for row, t in enumerate(batch):
            inputs[t] = logp[row, :len(t)]
    out = []
    for ctx, cont in pairs:
        rows = inputs[tuple((ctx + cont)[:-1])]
        n = len(ctx) + len(cont) - 1
        picked = rows[n - len(cont):n].gather(1, torch.tensor(cont, dtype=torch.int64)[:, None]).flatten()
        out.append(picked.tolist())
    return out, len(inputs), sum(len(t) for t in inputs), len(batches)


if opt.requests:
    spec = json.load(open(opt.requests))
    result = {'loadSeconds': load_seconds, 'baselineRssBytes': baseline, 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'blas': blas_libraries(), 'tasks': {}}
    for name, task in spec['tasks'].items():
        pairs = lm_eval_pairs(task['requests'])
        if task.get('warmup'):
            score_like_hflm(pairs[:2], spec['batchTokens'])
        t = time.perf_counter()
        lps, forwards, tokens, batches = score_like_hflm(pairs, spec['batchTokens'])
        seconds = time.perf_counter() - t
        emit({'phase': 'task:' + name, 'seconds': seconds, 'forwards': forwards, 'inputTokens': tokens, 'batches': batches})
        if opt.out:
            np.array([v for lp in lps for v in lp], dtype=np.float32).tofile(f'{opt.out}.{name}')
        result['tasks'][name] = {'seconds': seconds, 'forwards': forwards, 'inputTokens': tokens, 'batches': batches}
    result['peakRssBytes'] = vm_kb('VmHWM')
    emit(result)
    sys.exit(0)

ids = torch.from_numpy(np.fromfile(opt.tokens, dtype=np.int64))
warm = 0.0
if opt.warmup > 0:
    t = time.perf_counter()
    forward(ids[:opt.warmup])
    warm = time.perf_counter() - t
    emit({'phase': 'warmup', 'seconds': warm})
result = {'loadSeconds': load_seconds, 'warmupSeconds': warm, 'baselineRssBytes': baseline, 'torch': torch.__version__,
          'threads': torch.get_num_threads(), 'blas': blas_libraries()}
if not opt.load_only:
    t = time.perf_counter()
    lp = forward(ids)
    fwd = time.perf_counter() - t
    emit({'phase': 'forward', 'seconds': fwd})
    if opt.out:
        lp.numpy().astype(np.float32).tofile(opt.out)
    result.update({'forwardSeconds': fwd, 'tokens': int(ids.shape[0]), 'tokensPerSecond': ids.shape[0] / fwd})
result['peakRssBytes'] = vm_kb('VmHWM')
emit(result)
