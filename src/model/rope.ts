// Rotary position embeddings as transformers computes them (src/transformers/modeling_rope_utils.py):
// where the parameters live in config.json (v4: rope_theta + rope_scaling; v5: rope_parameters), the
// inverse frequencies, and YaRN's attention factor. Anything else is an error naming the field.
import { fail } from '../errors.ts'

export interface YarnParams {
  factor: number
  originalMaxPositions: number
  betaFast: number
  betaSlow: number
  mscale: number | null
  mscaleAllDim: number | null
  truncate: boolean
}

export interface RopeSpec {
  type: 'default' | 'yarn'
  theta: number
  /** Rotary dimension (head_dim, or qk_rope_head_dim for MLA). */
  dim: number
  /** Inverse frequencies [dim / 2] (float64 values of what transformers computes in float32). */
  invFreq: number[]
  /** transformers' `attention_scaling`: cos and sin are multiplied by it (1 for default rope). */
  attentionFactor: number
  yarn?: YarnParams
}

type Json = Record<string, unknown>

/** YaRN's magnitude correction 0.1 · mscale · ln(scale) + 1 (1 when scale <= 1); modeling_rope_utils get_mscale. */
export function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1
}

/**
 * The rope parameters of a config.json in either layout. transformers v5 (RotaryEmbeddingConfigMixin
 * .convert_rope_params_to_dict) takes `rope_scaling` when set, else `rope_parameters`, and fills
 * rope_theta from the top-level key or the class default.
 * @param where  the field name to cite in errors ('rope_scaling' or 'rope_parameters').
 */
export function ropeParameters(cfg: Json, defaultTheta: number): { params: Json; where: string; theta: number } {
  const scaling = cfg.rope_scaling
  const v5 = cfg.rope_parameters
  for (const [key, v] of [['rope_scaling', scaling], ['rope_parameters', v5]] as const) {
    if (v != null && (typeof v !== 'object' || Array.isArray(v))) fail('CONFIG_INVALID', `config.json: '${key}' must be an object or null (got ${JSON.stringify(v)}).`)
  }
  const useScaling = scaling != null && Object.keys(scaling as Json).length > 0
  let params = (useScaling ? scaling : v5 ?? {}) as Json
  let where = useScaling ? 'rope_scaling' : 'rope_parameters'
  const nested = perLayerType(cfg, params, where)
  if (nested) ({ params, where } = nested)
  const thetaRaw = params.rope_theta ?? cfg.rope_theta ?? defaultTheta
  if (typeof thetaRaw !== 'number' || !(thetaRaw > 1)) fail('CONFIG_INVALID', `config.json: rope_theta must be a number > 1 (got ${JSON.stringify(thetaRaw)}).`)
  return { params, where, theta: thetaRaw }
}

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * transformers v5 also accepts rope parameters keyed by layer type (`"rope_parameters": {"full_attention":
 * {...}, "sliding_attention": {...}}`, RotaryEmbeddingConfigMixin.standardize_rope_params; each layer's
 * rotary embedding reads the entry of its `layer_types` type). A flat dict never holds an object value
 * (list-valued fields such as long_factor are arrays), so any object value means this layout. The
 * harness computes one rotary embedding for every layer: the entries of the layer types the model uses
 * (`layer_types`, or full attention when absent) must exist and agree, and that one entry is returned
 * with the field to cite; otherwise CONFIG_INVALID / CONFIG_UNSUPPORTED naming the field. Returns
 * undefined for a flat dict.
 */
function perLayerType(cfg: Json, params: Json, where: string): { params: Json; where: string } | undefined {
  const keys = Object.keys(params).filter(k => isObject(params[k]))
  if (!keys.length) return undefined
  const flat = Object.keys(params).filter(k => !isObject(params[k]))
  if (flat.length) {
    fail('CONFIG_INVALID', `config.json: '${where}' mixes per-layer-type entries (${keys.join(', ')}) with top-level fields (${flat.join(', ')}); give either one flat dict or one dict per layer type.`)
  }
  const declared = cfg.layer_types
  if (declared != null && (!Array.isArray(declared) || !declared.every(t => typeof t === 'string'))) {
    fail('CONFIG_INVALID', `config.json: 'layer_types' must be a list of strings (got ${JSON.stringify(declared)}).`)
  }
  const used = [...new Set((declared as string[] | undefined) ?? ['full_attention'])]
  const missing = used.filter(t => !isObject(params[t]))
  if (missing.length) {
    fail('CONFIG_INVALID', `config.json: '${where}' is keyed by layer type (${keys.join(', ')}) but has no entry for ${missing.map(t => `'${t}'`).join(', ')}, which ${declared ? "'layer_types' uses" : "every layer is (no 'layer_types')"}; add it.`)
  }
  const first = JSON.stringify(params[used[0]])
  const differing = used.filter(t => JSON.stringify(params[t]) !== first)
  if (differing.length) {
    fail('CONFIG_UNSUPPORTED', `config.json: '${where}' gives layer types ${used.map(t => `'${t}'`).join(' and ')} different rotary embeddings (${used.map(t => `${t}: ${JSON.stringify(params[t])}`).join('; ')}); one rotary embedding for all layers is implemented.`)
  }
  return { params: params[used[0]] as Json, where: `${where}.${used[0]}` }
}

/**
 * Parses and computes the rotary embedding.
 * @param allowYarn  whether this family accepts YaRN (the families whose Hub checkpoints carry it).
 * Errors: CONFIG_UNSUPPORTED for a rope type other than default / yarn, naming the field;
 * CONFIG_INVALID for malformed YaRN parameters.
 */
export function parseRope(cfg: Json, opts: { dim: number; defaultTheta: number; maxPositions: number; allowYarn: boolean; family: string }): RopeSpec {
  const { params, where, theta } = ropeParameters(cfg, opts.defaultTheta)
  if (params.partial_rotary_factor != null && params.partial_rotary_factor !== 1) {
    fail('CONFIG_UNSUPPORTED', `config.json: ${where}.partial_rotary_factor ${JSON.stringify(params.partial_rotary_factor)} is not supported (only 1).`)
  }
  const type = params.rope_type ?? params.type ?? 'default'
  const dim = opts.dim
  const defaultInv = Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / dim))
  if (type === 'default') return { type: 'default', theta, dim, invFreq: defaultInv, attentionFactor: 1 }
  if (type !== 'yarn' || !opts.allowYarn) {
    const supported = opts.allowYarn ? "'default' and 'yarn' are" : "only 'default' is"
    fail('CONFIG_UNSUPPORTED', `config.json: ${where}.rope_type '${String(type)}' is not supported for ${opts.family}; ${supported} implemented (${where}: ${JSON.stringify(params)}). Remove the field to use plain rotary embeddings, or use a model whose rope type is supported.`)
  }
  const numOr = (key: string, fallback: number | null): number | null => {
    const v = params[key]
    if (v == null) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v)) fail('CONFIG_INVALID', `config.json: ${where}.${key} must be a number (got ${JSON.stringify(v)}).`)
    return v
  }
  const orig = numOr('original_max_position_embeddings', typeof cfg.original_max_position_embeddings === 'number' ? cfg.original_max_position_embeddings : opts.maxPositions)!
  // v5: a missing factor is max_position_embeddings / original_max_position_embeddings; a given one is kept.
  const factor = numOr('factor', opts.maxPositions / orig)!
  if (!(factor > 0)) fail('CONFIG_INVALID', `config.json: ${where}.factor must be > 0 (got ${factor}).`)
  const mscale = numOr('mscale', null)
  const mscaleAllDim = numOr('mscale_all_dim', null)
  let attentionFactor = numOr('attention_factor', null)
  if (attentionFactor === null) {
    attentionFactor = mscale && mscaleAllDim ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor)
  }
  // `or` in transformers: 0 / null fall back to the paper's 32 / 1.
  const betaFast = numOr('beta_fast', null) || 32
  const betaSlow = numOr('beta_slow', null) || 1
  const truncate = params.truncate ?? true
  if (typeof truncate !== 'boolean') fail('CONFIG_INVALID', `config.json: ${where}.truncate must be true or false.`)

  const correctionDim = (rotations: number) => (dim * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(theta))
  let low = correctionDim(betaFast)
  let high = correctionDim(betaSlow)
  if (truncate) { low = Math.floor(low); high = Math.ceil(high) }
  low = Math.max(low, 0)
  high = Math.min(high, dim - 1)
  if (low === high) high += 0.001 // transformers: prevent a singular ramp
  const f32 = Math.fround
  const invFreq = Array.from({ length: dim / 2 }, (_, i) => {
    const posFreq = f32(Math.pow(theta, f32((2 * i) / dim)))
    const extrapolation = f32(1 / posFreq)
    const interpolation = f32(1 / f32(factor * posFreq))
    const ramp = Math.min(1, Math.max(0, f32((i - low) / (high - low))))
    const extrapolationFactor = f32(1 - ramp)
    return f32(f32(interpolation * f32(1 - extrapolationFactor)) + f32(extrapolation * extrapolationFactor))
  })
  return {
    type: 'yarn', theta, dim, invFreq, attentionFactor,
    yarn: { factor, originalMaxPositions: orig, betaFast, betaSlow, mscale, mscaleAllDim, truncate },
  }
}
