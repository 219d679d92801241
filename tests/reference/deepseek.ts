// An independent float64 forward pass of DeepSeek-V2 / DeepSeek-V3 (DeepseekV2ForCausalLM,
// DeepseekV3ForCausalLM), written from transformers' modeling_deepseek_v2.py / modeling_deepseek_v3.py
// (v5 generation) and the Hub remote code where transformers leaves a config key unread. Test oracle
// only: shares nothing with src/onnx or src/model.
//
// Semantics, with where each was read:
// - MLA (DeepseekV2/V3Attention): q = q_proj(h), or q_b_proj(q_a_layernorm(q_a_proj(h))) when
//   q_lora_rank is set; per head q = [nope | rope]. kv_a_proj_with_mqa(h) = [latent (kv_lora_rank) |
//   k_rope (one head, shared by all heads)]; kv_b_proj(kv_a_layernorm(latent)) = per head [k_nope | v].
//   q_a_layernorm and kv_a_layernorm are built as RMSNorm(dim) with the module default eps 1e-6,
//   NOT config.rms_norm_eps (only input/post_attention/final norms use rms_norm_eps).
// - Rotary on the rope part only. V2 (apply_rotary_emb): view_as_complex on consecutive pairs
//   (2i, 2i+1) rotated by inv_freq[i]. V3 with rope_interleave (default true): the same pairs,
//   de-interleaved first (apply_rotary_pos_emb_interleave) - same dot products; rope_interleave
//   false: rotate_half pairs (i, i + d/2). cos/sin carry the YaRN attention_factor.
// - Softmax scale: qk_head_dim^-0.5, times yarn_get_mscale(factor, mscale_all_dim)² when the rope
//   type is not default and mscale_all_dim is non-zero (V3; V2 since transformers PR #47435).
// - Layers: MoE where n_routed_experts is set, layer >= first_k_dense_replace and
//   layer % moe_layer_freq == 0 (Hub modeling_deepseek.py; transformers reads no moe_layer_freq,
//   which is the same for every published checkpoint: moe_layer_freq 1).
// - V2 router (DeepseekV2Moe.route_tokens_to_experts): softmax over the experts; greedy top-k, or
//   group_limited_greedy: group score = max prob in the group, keep topk_group groups, other
//   groups' scores filled with 0.0, top-k. Weights = probs × routed_scaling_factor. transformers
//   never reads norm_topk_prob for V2; the Hub remote code (DeepSeek-V2 modeling_deepseek.py
//   MoEGate) divides by (sum + 1e-20) when top_k > 1 and norm_topk_prob and then does NOT apply
//   routed_scaling_factor (only its else-branch scales). This reference follows the Hub code (no
//   published V2 checkpoint sets norm_topk_prob; the engine refuses it with a factor other than 1).
// - V3 router (DeepseekV3MoE.route_tokens_to_experts): s = sigmoid(logits); choice = s +
//   e_score_correction_bias; group score = sum of the group's top-2 choices; keep topk_group
//   groups, others filled with 0.0; top-k on choice; weights = s (bias-free) of the chosen,
//   divided by (sum + 1e-20) when norm_topk_prob, then × routed_scaling_factor. topk_method is not
//   read (always this rule); n_group 1 / topk_group 1 is plain top-k on s + bias.
// - Shared experts (mlp.shared_experts, intermediate moe_intermediate_size × n_shared_experts) are
//   added unweighted, untouched by every hook.
//
// Disabled experts (methods.md §4.1 physical removal: as if their router rows, and the
// correction-bias entries, had been sliced away). Without groups that is exact: V2's softmax runs
// over the survivors only; V3's sigmoid is per expert so the survivors' scores do not change. With
// groups, transformers would view the sliced router as n_group contiguous chunks of E'/n_group
// experts, so slicing is only loadable when every group loses the same number of experts, and then
// each new chunk is exactly the survivors of the original group (order is kept). This reference
// therefore keeps the ORIGINAL group membership (group g = experts [g·E/n_group, (g+1)·E/n_group))
// minus the disabled ones, for equal and unequal removal alike: group score = max survivor prob (V2)
// or the sum of the top-2 surviving choices (V3; a group with one survivor scores that one, a group
// with none is never selected); disabled experts are never candidates, also not through the 0.0
// fill. Ties (torch.topk leaves them unspecified) go to the lower index.
import type { RefHooks } from './forward.ts'
import { ropeSettings, ropeTables } from './rope.ts'

type Tensors = Map<string, { shape: number[]; data: Float32Array }>
type Vec = Float64Array

export function referenceDeepseekLogprobs(config: Record<string, any>, tensors: Tensors, ids: number[], hooks: RefHooks = {}): number[] {
  if (hooks.skipSecondBeta && Object.keys(hooks.skipSecondBeta).length) throw new Error('reference: skipSecondBeta is not defined for DeepSeek routers')
  const v3 = config.architectures[0] === 'DeepseekV3ForCausalLM'
  const d: number = config.hidden_size
  const H: number = config.num_attention_heads
  const qLora: number | null = config.q_lora_rank ?? null
  const kvLora: number = config.kv_lora_rank
  const nope: number = config.qk_nope_head_dim
  const rope: number = config.qk_rope_head_dim
  const vHd: number = config.v_head_dim
  const qkHd = nope + rope
  const eps: number = config.rms_norm_eps
  const E: number | null = config.n_routed_experts ?? null
  const T = ids.length
  const W = (name: string) => {
    const t = tensors.get(name)
    if (!t) throw new Error(`reference: missing ${name}`)
    return t
  }
  const matvec = (name: string, x: Vec, biasName?: string): Vec => {
    const t = W(name)
    const [out, inp] = t.shape
    if (inp !== x.length) throw new Error(`reference: ${name} is [${t.shape}] but the input has ${x.length}`)
    const y = new Float64Array(out)
    for (let o = 0; o < out; o++) {
      let s = 0
      for (let i = 0; i < inp; i++) s += t.data[o * inp + i] * x[i]
      y[o] = s
    }
    if (biasName && tensors.has(biasName)) { const b = W(biasName).data; for (let o = 0; o < out; o++) y[o] += b[o] }
    return y
  }
  const rms = (x: Vec, wName: string, e: number): Vec => {
    const w = W(wName).data
    let s = 0
    for (let i = 0; i < x.length; i++) s += x[i] * x[i]
    const inv = 1 / Math.sqrt(s / x.length + e)
    return x.map((v, i) => w[i] * (v * inv))
  }
  const silu = (v: number) => v / (1 + Math.exp(-v))
  const ffn = (prefix: string, h: Vec, keep?: number): Vec => {
    const a = matvec(`${prefix}.gate_proj.weight`, h).map(silu)
    const u = matvec(`${prefix}.up_proj.weight`, h)
    const mid = a.map((v, i) => v * u[i])
    if (keep !== undefined && keep < 1) {
      const F = a.length
      const m = Math.max(1, Math.ceil(keep * F - 1e-9))
      const order = Array.from({ length: F }, (_, i) => i).sort((i, j) => Math.abs(a[j]) - Math.abs(a[i]) || i - j)
      const kept = new Set(order.slice(0, m))
      for (let i = 0; i < F; i++) if (!kept.has(i)) mid[i] = 0
    }
    return matvec(`${prefix}.down_proj.weight`, mid)
  }

  // ---- rotary tables (dim = qk_rope_head_dim: the configs set head_dim = qk_rope_head_dim)
  const { invFreq, attentionFactor, softmaxMscale2 } = ropeTables(config, rope)
  const { type: ropeType } = ropeSettings(config)
  const scale = Math.pow(qkHd, -0.5) * (ropeType !== 'default' ? softmaxMscale2 : 1)
  const interleaved = v3 ? config.rope_interleave ?? true : true
  // Returns the rotated vector in a fixed layout: pair i at (2i, 2i+1). Only dot products of q and k
  // are used, so any layout applied to both is equivalent.
  const rotate = (x: Vec, off: number, t: number): Vec => {
    const out = new Float64Array(rope)
    for (let i = 0; i < rope / 2; i++) {
      const ang = Math.fround(t * invFreq[i])
      const c = Math.cos(ang) * attentionFactor, s = Math.sin(ang) * attentionFactor
      const a = interleaved ? x[off + 2 * i] : x[off + i]
      const b = interleaved ? x[off + 2 * i + 1] : x[off + i + rope / 2]
      out[2 * i] = a * c - b * s
      out[2 * i + 1] = b * c + a * s
    }
    return out
  }

  const embed = W('model.embed_tokens.weight').data
  const xs: Vec[] = ids.map(id => Float64Array.from(embed.subarray(id * d, (id + 1) * d)))
  const firstK: number = config.first_k_dense_replace ?? 0
  const freq: number = config.moe_layer_freq ?? 1

  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`
    // ---- MLA
    const qN: Vec[][] = [], qR: Vec[][] = [], kN: Vec[][] = [], kR: Vec[] = [], vv: Vec[][] = []
    for (let t = 0; t < T; t++) {
      const h = rms(xs[t], `${p}.input_layernorm.weight`, eps)
      const q = qLora === null
        ? matvec(`${p}.self_attn.q_proj.weight`, h)
        : matvec(`${p}.self_attn.q_b_proj.weight`, rms(matvec(`${p}.self_attn.q_a_proj.weight`, h, `${p}.self_attn.q_a_proj.bias`), `${p}.self_attn.q_a_layernorm.weight`, 1e-6))
      const ckv = matvec(`${p}.self_attn.kv_a_proj_with_mqa.weight`, h, `${p}.self_attn.kv_a_proj_with_mqa.bias`)
      const kv = matvec(`${p}.self_attn.kv_b_proj.weight`, rms(ckv.slice(0, kvLora), `${p}.self_attn.kv_a_layernorm.weight`, 1e-6))
      kR.push(rotate(ckv, kvLora, t))
      qN.push([]); qR.push([]); kN.push([]); vv.push([])
      for (let hh = 0; hh < H; hh++) {
        qN[t].push(q.slice(hh * qkHd, hh * qkHd + nope))
        qR[t].push(rotate(q, hh * qkHd + nope, t))
        kN[t].push(kv.slice(hh * (nope + vHd), hh * (nope + vHd) + nope))
        vv[t].push(kv.slice(hh * (nope + vHd) + nope, (hh + 1) * (nope + vHd)))
      }
    }
    const attnOut: Vec[] = []
    for (let t = 0; t < T; t++) {
      const ctx = new Float64Array(H * vHd)
      for (let hh = 0; hh < H; hh++) {
        const sc = new Float64Array(t + 1)
        let mx = -Infinity
        for (let j = 0; j <= t; j++) {
          let s = 0
          for (let i = 0; i < nope; i++) s += qN[t][hh][i] * kN[j][hh][i]
          for (let i = 0; i < rope; i++) s += qR[t][hh][i] * kR[j][i]
          sc[j] = s * scale
          mx = Math.max(mx, sc[j])
        }
        let z = 0
        for (let j = 0; j <= t; j++) { sc[j] = Math.exp(sc[j] - mx); z += sc[j] }
        for (let j = 0; j <= t; j++) for (let i = 0; i < vHd; i++) ctx[hh * vHd + i] += (sc[j] / z) * vv[j][hh][i]
      }
      attnOut.push(matvec(`${p}.self_attn.o_proj.weight`, ctx, `${p}.self_attn.o_proj.bias`))
    }
    for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) xs[t][i] += attnOut[t][i]

    // ---- MLP / MoE
    const moe = E !== null && l >= firstK && l % freq === 0
    for (let t = 0; t < T; t++) {
      const h = rms(xs[t], `${p}.post_attention_layernorm.weight`, eps)
      let out: Vec
      if (!moe) {
        out = ffn(`${p}.mlp`, h)
      } else {
        const logits = Array.from(matvec(`${p}.mlp.gate.weight`, h))
        const { selected, weights } = route(config, v3, logits, v3 ? W(`${p}.mlp.gate.e_score_correction_bias`).data : null, new Set(hooks.disabled?.[l] ?? []), hooks.topK?.[l])
        out = new Float64Array(d)
        selected.forEach((e, i) => {
          const nov = hooks.novices?.[l]?.[e]
          const y = nov ? Float64Array.from(nov) : ffn(`${p}.mlp.experts.${hooks.bindings?.[l]?.[e] ?? e}`, h, hooks.neuronKeep?.[l])
          for (let j = 0; j < d; j++) out[j] += weights[i] * y[j]
        })
        hooks.trace?.({
          layer: l, token: t, input: Float64Array.from(h), logits, selected, weights,
          expertOut: e => ffn(`${p}.mlp.experts.${e}`, h), output: Float64Array.from(out),
        })
        if (config.n_shared_experts) {
          const sh = ffn(`${p}.mlp.shared_experts`, h)
          for (let j = 0; j < d; j++) out[j] += sh[j]
        }
      }
      for (let i = 0; i < d; i++) xs[t][i] += out[i]
    }
  }
  const head = config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'
  const result: number[] = []
  for (let t = 0; t + 1 < T; t++) {
    const logits = matvec(head, rms(xs[t], 'model.norm.weight', eps))
    let mx = -Infinity
    for (const v of logits) mx = Math.max(mx, v)
    let z = 0
    for (const v of logits) z += Math.exp(v - mx)
    result.push(logits[ids[t + 1]] - mx - Math.log(z))
  }
  return result
}

/** Top-n indices of `value` among `pool`, value descending, ties to the lower index. */
function topIndices(pool: number[], value: (e: number) => number, n: number): number[] {
  return [...pool].sort((a, b) => value(b) - value(a) || a - b).slice(0, n)
}

/**
 * One token's routing. Returns the chosen experts (by choice value, descending) and the gate
 * weights applied to them. See the header for the rules and the disabled-expert semantics.
 */
export function route(config: Record<string, any>, v3: boolean, logits: number[], bias: Float32Array | null, disabled: Set<number>, topK?: number): { selected: number[]; weights: number[] } {
  const E = logits.length
  const k: number = topK ?? config.num_experts_per_tok
  const alive = Array.from({ length: E }, (_, e) => e).filter(e => !disabled.has(e))
  if (alive.length < k) throw new Error(`reference: only ${alive.length} experts left for top-${k}`)
  let scores: number[]
  if (v3) {
    scores = logits.map(z => 1 / (1 + Math.exp(-z)))
  } else {
    const mx = Math.max(...alive.map(e => logits[e]))
    const ex = logits.map((z, e) => (disabled.has(e) ? 0 : Math.exp(z - mx)))
    const Z = ex.reduce((a, b) => a + b, 0)
    scores = ex.map(v => v / Z)
  }
  const choice = v3 ? scores.map((s, e) => s + (bias ? bias[e] : 0)) : scores
  const grouped = v3 || config.topk_method === 'group_limited_greedy'
  let value = (e: number) => choice[e]
  if (grouped) {
    const G: number = config.n_group ?? 1
    const size = E / G
    if (!Number.isInteger(size)) throw new Error(`reference: n_routed_experts ${E} is not a multiple of n_group ${G}`)
    const groupScore = (g: number): number => {
      const members = alive.filter(e => Math.floor(e / size) === g).map(e => choice[e]).sort((a, b) => b - a)
      if (members.length === 0) return -Infinity
      return v3 ? members[0] + (members[1] ?? 0) : members[0]
    }
    const gs = Array.from({ length: G }, (_, g) => groupScore(g))
    const keptGroups = new Set(topIndices(Array.from({ length: G }, (_, g) => g).filter(g => gs[g] > -Infinity), g => gs[g], config.topk_group ?? G))
    value = e => (keptGroups.has(Math.floor(e / size)) ? choice[e] : 0.0)
  }
  const selected = topIndices(alive, value, k)
  let weights = selected.map(e => scores[e])
  const norm = v3 ? !!config.norm_topk_prob : k > 1 && !!config.norm_topk_prob
  if (norm) { const s = weights.reduce((a, b) => a + b, 0) + 1e-20; weights = weights.map(w => w / s) }
  const rsf: number = config.routed_scaling_factor ?? (v3 ? 2.5 : 1)
  // V2 (Hub code): the scaling factor only on the unnormalised branch; V3: always.
  return { selected, weights: !v3 && norm ? weights : weights.map(w => w * rsf) }
}
