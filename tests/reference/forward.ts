// An independent plain-TypeScript forward pass (float64) of the HF MoE families, written from the
// HF modelling code, sharing nothing with the ONNX graph builder. Test oracle only. DeepSeek-V2/V3
// live in deepseek.ts; rotary frequencies (default and YaRN, v4 and v5 configs) in rope.ts.
import { referenceDeepseekLogprobs } from './deepseek.ts'
import { ropeTables } from './rope.ts'

/** What the reference saw in one MoE layer for one token (for independent calibration statistics). */
export interface RefTrace {
  layer: number
  token: number
  input: Float64Array
  logits: number[]
  selected: number[]
  /** Gates as the model applied them. */
  weights: number[]
  /** Every expert's output on this token (forced), pre-gate. */
  expertOut: (e: number) => Float64Array
  /** The layer's output (without the shared expert). */
  output: Float64Array
}

export interface RefHooks {
  trace?: (t: RefTrace) => void
  disabled?: Record<number, number[]>
  bindings?: Record<number, Record<number, number>>
  novices?: Record<number, Record<number, Float32Array>>
  neuronKeep?: Record<number, number>
  skipSecondBeta?: Record<number, number>
  /** Per-layer routing top-k overriding num_experts_per_tok. */
  topK?: Record<number, number>
}

type Tensors = Map<string, { shape: number[]; data: Float32Array }>
type Vec = Float64Array

export function referenceLogprobs(config: Record<string, any>, tensors: Tensors, ids: number[], hooks: RefHooks = {}): number[] {
  const arch: string = config.architectures[0]
  if (arch === 'DeepseekV2ForCausalLM' || arch === 'DeepseekV3ForCausalLM') return referenceDeepseekLogprobs(config, tensors, ids, hooks)
  const fam = arch === 'MixtralForCausalLM' ? 'mixtral' : arch === 'OlmoeForCausalLM' ? 'olmoe' : arch === 'Qwen2MoeForCausalLM' ? 'qwen2' : 'qwen3'
  const d: number = config.hidden_size
  const H: number = config.num_attention_heads
  const KV: number = config.num_key_value_heads ?? H
  const hd: number = (fam === 'mixtral' || fam === 'qwen3') && config.head_dim ? config.head_dim : d / H
  const eps: number = config.rms_norm_eps
  // YaRN on these families: inv_freq blend and attention_factor on cos/sin, no softmax correction.
  const { invFreq, attentionFactor } = ropeTables(config, hd)
  const T = ids.length
  const W = (name: string) => {
    const t = tensors.get(name)
    if (!t) throw new Error(`reference: missing ${name}`)
    return t
  }
  // y = W x for W [out, in]
  const matvec = (name: string, x: Vec, biasName?: string): Vec => {
    const t = W(name)
    const [out, inp] = t.shape
    const y = new Float64Array(out)
    for (let o = 0; o < out; o++) {
      let s = 0
      for (let i = 0; i < inp; i++) s += t.data[o * inp + i] * x[i]
      y[o] = s
    }
    if (biasName) { const b = W(biasName).data; for (let o = 0; o < out; o++) y[o] += b[o] }
    return y
  }
  const rms = (x: Vec, wName: string, off = 0, len = x.length): void => {
    const w = W(wName).data
    let s = 0
    for (let i = 0; i < len; i++) s += x[off + i] * x[off + i]
    const inv = 1 / Math.sqrt(s / len + eps)
    for (let i = 0; i < len; i++) x[off + i] = w[i] * (x[off + i] * inv)
  }
  const silu = (v: number) => v / (1 + Math.exp(-v))

  const embed = W('model.embed_tokens.weight').data
  let xs: Vec[] = ids.map(id => Float64Array.from(embed.subarray(id * d, (id + 1) * d)))

  const mlpOnly: number[] = config.mlp_only_layers ?? []
  const step: number = config.decoder_sparse_step ?? 1
  const numExperts: number = fam === 'mixtral' ? config.num_local_experts : config.num_experts
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`
    // ---- attention
    const qs: Vec[] = [], ks: Vec[] = [], vs: Vec[] = []
    for (let t = 0; t < T; t++) {
      const h = Float64Array.from(xs[t])
      rms(h, `${p}.input_layernorm.weight`)
      const bias = fam === 'qwen2'
      const q = matvec(`${p}.self_attn.q_proj.weight`, h, bias ? `${p}.self_attn.q_proj.bias` : undefined)
      const k = matvec(`${p}.self_attn.k_proj.weight`, h, bias ? `${p}.self_attn.k_proj.bias` : undefined)
      const v = matvec(`${p}.self_attn.v_proj.weight`, h, bias ? `${p}.self_attn.v_proj.bias` : undefined)
      if (fam === 'olmoe') {
        rms(q, `${p}.self_attn.q_norm.weight`)
        rms(k, `${p}.self_attn.k_norm.weight`)
        if (config.clip_qkv != null) {
          const c = config.clip_qkv
          for (const a of [q, k, v]) for (let i = 0; i < a.length; i++) a[i] = Math.min(c, Math.max(-c, a[i]))
        }
      }
      if (fam === 'qwen3') {
        for (let hh = 0; hh < H; hh++) rms(q, `${p}.self_attn.q_norm.weight`, hh * hd, hd)
        for (let hh = 0; hh < KV; hh++) rms(k, `${p}.self_attn.k_norm.weight`, hh * hd, hd)
      }
      // rotary (rotate_half): pairs (i, i + hd/2) rotated by pos * inv_freq[i]
      const rot = (a: Vec, nh: number) => {
        for (let hh = 0; hh < nh; hh++) {
          for (let i = 0; i < hd / 2; i++) {
            const ang = Math.fround(t * invFreq[i])
            const c = Math.cos(ang) * attentionFactor, s = Math.sin(ang) * attentionFactor
            const a1 = a[hh * hd + i], a2 = a[hh * hd + i + hd / 2]
            a[hh * hd + i] = a1 * c - a2 * s
            a[hh * hd + i + hd / 2] = a2 * c + a1 * s
          }
        }
      }
      rot(q, H)
      rot(k, KV)
      qs.push(q); ks.push(k); vs.push(v)
    }
    const rep = H / KV
    for (let t = 0; t < T; t++) {
      const ctx = new Float64Array(H * hd)
      for (let hh = 0; hh < H; hh++) {
        const kvh = Math.floor(hh / rep)
        const scores = new Float64Array(t + 1)
        let mx = -Infinity
        for (let j = 0; j <= t; j++) {
          let s = 0
          for (let i = 0; i < hd; i++) s += qs[t][hh * hd + i] * ks[j][kvh * hd + i]
          scores[j] = s / Math.sqrt(hd)
          mx = Math.max(mx, scores[j])
        }
        let z = 0
        for (let j = 0; j <= t; j++) { scores[j] = Math.exp(scores[j] - mx); z += scores[j] }
        for (let j = 0; j <= t; j++) for (let i = 0; i < hd; i++) ctx[hh * hd + i] += (scores[j] / z) * vs[j][kvh * hd + i]
      }
      const o = matvec(`${p}.self_attn.o_proj.weight`, ctx)
      for (let i = 0; i < d; i++) xs[t][i] += o[i]
    }
    // ---- MLP / MoE
    const qwen = fam === 'qwen2' || fam === 'qwen3'
    const sparse = !qwen || (!mlpOnly.includes(l) && numExperts > 0 && (l + 1) % step === 0)
    for (let t = 0; t < T; t++) {
      const h = Float64Array.from(xs[t])
      rms(h, `${p}.post_attention_layernorm.weight`)
      const ffnOf = (prefix: string, names: [string, string, string], keep?: number): Vec => {
        const a = matvec(`${prefix}.${names[0]}.weight`, h).map(silu)
        const u = matvec(`${prefix}.${names[1]}.weight`, h)
        const mid = a.map((v, i) => v * u[i])
        if (keep !== undefined && keep < 1) {
          const F = a.length
          const m = Math.max(1, Math.ceil(keep * F - 1e-9))
          const order = Array.from({ length: F }, (_, i) => i).sort((i, j) => Math.abs(a[j]) - Math.abs(a[i]) || i - j)
          const kept = new Set(order.slice(0, m))
          for (let i = 0; i < F; i++) if (!kept.has(i)) mid[i] = 0
        }
        return matvec(`${prefix}.${names[2]}.weight`, mid)
      }
      let out: Vec
      if (!sparse) {
        out = ffnOf(`${p}.mlp`, ['gate_proj', 'up_proj', 'down_proj'])
      } else {
        const moeP = fam === 'mixtral' ? `${p}.block_sparse_moe` : `${p}.mlp`
        const names: [string, string, string] = fam === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj']
        const logits = Array.from(matvec(`${moeP}.gate.weight`, h))
        const disabled = new Set(hooks.disabled?.[l] ?? [])
        // physical removal: softmax over the survivors only
        const alive = logits.map((_, e) => !disabled.has(e))
        const mx = Math.max(...logits.filter((_, e) => alive[e]))
        const ex = logits.map((z, e) => (alive[e] ? Math.exp(z - mx) : 0))
        const Z = ex.reduce((a, b) => a + b, 0)
        const probs = ex.map(v => v / Z)
        const k: number = hooks.topK?.[l] ?? config.num_experts_per_tok
        const order = probs.map((pv, e) => e).filter(e => alive[e]).sort((a, b) => probs[b] - probs[a] || a - b)
        let sel = order.slice(0, k)
        let w = sel.map(e => probs[e])
        const beta = hooks.skipSecondBeta?.[l]
        if (beta !== undefined && w[1] / w[0] < beta) { sel = [sel[0]]; w = [w[0]] }
        const norm = fam === 'mixtral' ? true : config.norm_topk_prob ?? false
        if (norm || beta !== undefined) { const s = w.reduce((a, b) => a + b, 0); w = w.map(v => v / s) }
        out = new Float64Array(d)
        sel.forEach((e, i) => {
          const nov = hooks.novices?.[l]?.[e]
          const y = nov ? Float64Array.from(nov) : ffnOf(`${moeP}.experts.${hooks.bindings?.[l]?.[e] ?? e}`, names, hooks.neuronKeep?.[l])
          for (let j = 0; j < d; j++) out[j] += w[i] * y[j]
        })
        hooks.trace?.({
          layer: l, token: t, input: Float64Array.from(h), logits, selected: sel, weights: w,
          expertOut: e => ffnOf(`${moeP}.experts.${e}`, names), output: Float64Array.from(out),
        })
        if (fam === 'qwen2' && tensors.has(`${p}.mlp.shared_expert_gate.weight`)) {
          const sh = ffnOf(`${p}.mlp.shared_expert`, ['gate_proj', 'up_proj', 'down_proj'])
          const gz = matvec(`${p}.mlp.shared_expert_gate.weight`, h)[0]
          const sg = 1 / (1 + Math.exp(-gz))
          for (let j = 0; j < d; j++) out[j] += sg * sh[j]
        }
      }
      for (let i = 0; i < d; i++) xs[t][i] += out[i]
    }
  }
  const head = config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'
  const result: number[] = []
  for (let t = 0; t + 1 < T; t++) {
    const h = Float64Array.from(xs[t])
    rms(h, 'model.norm.weight')
    const logits = matvec(head, h)
    let mx = -Infinity
    for (const v of logits) mx = Math.max(mx, v)
    let z = 0
    for (const v of logits) z += Math.exp(v - mx)
    result.push(logits[ids[t + 1]] - mx - Math.log(z))
  }
  return result
}
