// Rotary frequencies for the reference forward, written from transformers' modeling_rope_utils.py
// (_compute_default_rope_parameters, _compute_yarn_parameters) and the DeepSeek attention classes.
// Reads both config generations: v4 `rope_theta` + `rope_scaling` and v5 `rope_parameters`
// (which carries rope_theta itself). Test oracle only: shares nothing with src/.

export interface RopeTables {
  /** inv_freq[i] for the rotary pair i, rounded to float32 as transformers keeps the buffer. */
  invFreq: number[]
  /** YaRN attention_factor: multiplies cos and sin, i.e. both rotated q and k (1 for default rope). */
  attentionFactor: number
  /** DeepSeek MLA only: multiplier of the softmax scale, yarn_get_mscale(factor, mscale_all_dim)². */
  softmaxMscale2: number
}

type Config = Record<string, any>

/** The rope settings block and theta, whichever generation the config is. */
export function ropeSettings(config: Config): { theta: number; type: string; params: Record<string, any> } {
  const params: Record<string, any> | null = config.rope_parameters ?? config.rope_scaling ?? null
  const theta = params?.rope_theta ?? config.rope_theta ?? 10000
  const type = params ? params.rope_type ?? params.type ?? 'default' : 'default'
  return { theta, type, params: params ?? {} }
}

const getMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1)

/** Frequencies of a rotary dimension `dim` (even), default or YaRN. Throws on other rope types. */
export function ropeTables(config: Config, dim: number): RopeTables {
  const { theta, type, params } = ropeSettings(config)
  const half = dim / 2
  const pos = Array.from({ length: half }, (_, i) => Math.pow(theta, Math.fround((2 * i) / dim)))
  if (type === 'default') return { invFreq: pos.map(p => Math.fround(1 / p)), attentionFactor: 1, softmaxMscale2: 1 }
  if (type !== 'yarn') throw new Error(`reference: rope type ${type} is not implemented`)
  const maxPos: number = config.max_position_embeddings
  const orig: number = params.original_max_position_embeddings ?? maxPos
  // transformers v5: `factor` as given; only when absent the ratio of the two context lengths.
  const factor: number = params.factor ?? maxPos / orig
  let attentionFactor: number | undefined = params.attention_factor ?? undefined
  if (attentionFactor === undefined) {
    attentionFactor = params.mscale && params.mscale_all_dim
      ? getMscale(factor, params.mscale) / getMscale(factor, params.mscale_all_dim)
      : getMscale(factor)
  }
  const betaFast: number = params.beta_fast || 32
  const betaSlow: number = params.beta_slow || 1
  const corrDim = (rot: number) => (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(theta))
  let low = corrDim(betaFast), high = corrDim(betaSlow)
  if (params.truncate ?? true) { low = Math.floor(low); high = Math.ceil(high) }
  low = Math.max(low, 0); high = Math.min(high, dim - 1)
  if (low === high) high += 0.001
  const invFreq = pos.map((p, i) => {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)))
    const extrapolation = 1 - ramp
    return Math.fround((1 / (factor * p)) * (1 - extrapolation) + (1 / p) * extrapolation)
  })
  // DeepSeek's attention (DeepseekV2/V3Attention.__init__): scaling *= mscale² with the
  // configured factor and mscale_all_dim, whenever the rope type is not default.
  const mAll = params.mscale_all_dim
  const softmaxMscale2 = mAll ? getMscale(params.factor ?? factor, mAll) ** 2 : 1
  return { invFreq, attentionFactor, softmaxMscale2 }
}
