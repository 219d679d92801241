// Presents the stored tensors under the canonical per-expert names of the transformers v4 Hub files
// (tensorNames.ts), whatever generation wrote them, so the graph, methods and export never see the
// difference:
//  - transformers v5 fused experts: `model.layers.L.mlp.experts.gate_up_proj` [E, 2F, d] (gate rows
//    0..F-1, then up rows F..2F-1: MergeModulelist(dim=0) + Concatenate(dim=1) in
//    conversion_mapping.py; `gate, up = linear(x, gate_up_proj[e]).chunk(2, dim=-1)` in
//    modeling_mixtral.py's MixtralExperts) and `mlp.experts.down_proj` [E, d, F]. Expert e's gate, up
//    and down are contiguous byte ranges of the stack, so each is a view (no copy of the stack).
//    v5 Mixtral also renames `block_sparse_moe.gate` to `mlp.gate`.
//  - F8 weights with `<name>_scale_inv` blocks (DeepSeek-V3/R1): dequantized on read to an F32 entry.
import { fail } from '../errors.ts'
import { defaultedKeys } from './configDefaults.ts'
import type { ModelSpec } from './modelSpec.ts'
import { isEngineDType, type DType, type Fp8DType, type Fp8Source, type StoredTensor, type TensorEntry } from './safetensors.ts'
import type { ExpertNames, ModelNames } from './tensorNames.ts'

export interface ResolvedTensors {
  /** Every tensor the model needs, by canonical name, as the engine reads it. */
  tensors: Map<string, TensorEntry>
  /** Names of the stored tensors those entries read (stacks and scale tensors included). */
  used: Set<string>
  /** 'fused' when any layer's experts came from transformers-v5 stacks. */
  expertLayout: 'per-expert' | 'fused'
}

interface Fp8Settings { block: [number, number] }

const SUPPORTED_LAYOUTS = 'supported: one tensor per expert (transformers v4 and the Hub files, e.g. mlp.experts.0.gate_proj.weight) ' +
  'or the fused stacks transformers v5 writes (mlp.experts.gate_up_proj [E, 2·F, hidden] and mlp.experts.down_proj [E, hidden, F])'

/** quantization_config of config.json, for F8 weights: only block-wise fp8 (DeepSeek-V3's) is read. */
function fp8Settings(config: Record<string, unknown>, dir: string): Fp8Settings | undefined {
  const q = config.quantization_config as Record<string, unknown> | null | undefined
  if (q == null) return undefined
  if (typeof q !== 'object') fail('CONFIG_INVALID', `${dir}/config.json: quantization_config must be an object.`)
  if (q.quant_method !== 'fp8') {
    fail('CONFIG_UNSUPPORTED', `${dir}/config.json: quantization_config.quant_method ${JSON.stringify(q.quant_method)} is not supported; only block-wise "fp8" weights (DeepSeek-V3/R1) are dequantized on load. Use an unquantized checkpoint.`)
  }
  const size = q.weight_block_size ?? [128, 128] // transformers FineGrainedFP8Config default
  if (!Array.isArray(size) || size.length !== 2 || !size.every(x => Number.isInteger(x) && x > 0)) {
    fail('CONFIG_INVALID', `${dir}/config.json: quantization_config.weight_block_size must be [rows, cols] positive integers (got ${JSON.stringify(size)}).`)
  }
  return { block: [size[0], size[1]] }
}

/** The config.json keys tensor shapes are computed from (every family's; defaultedKeys keeps the family's own). */
const SHAPE_KEYS = [
  'hidden_size', 'vocab_size', 'intermediate_size', 'moe_intermediate_size', 'shared_expert_intermediate_size', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'num_local_experts', 'num_experts', 'n_routed_experts', 'n_shared_experts', 'kv_lora_rank',
  'q_lora_rank', 'qk_nope_head_dim', 'qk_rope_head_dim', 'v_head_dim',
] as const

export function resolveTensors(dir: string, spec: ModelSpec, names: ModelNames, expected: Map<string, number[]>, stored: Map<string, StoredTensor>, config: Record<string, unknown>): ResolvedTensors {
  const fp8 = fp8Settings(config, dir)
  const tensors = new Map<string, TensorEntry>()
  const used = new Set<string>()
  let fused = false

  const fp8Entry = (name: string, t: StoredTensor, shape: number[], matrix: number, firstRow: number, matrixRows: number, offset: number): TensorEntry => {
    const scaleName = `${t.name}_scale_inv`
    const scale = stored.get(scaleName)
    if (!scale) fail('TENSOR_MISSING', `${t.file}: '${t.name}' is ${t.dtype} but its block scales '${scaleName}' are missing; an F8 weight needs them to be dequantized.`)
    if (!fp8) fail('CONFIG_INVALID', `${dir}: '${t.name}' is ${t.dtype}, but config.json has no quantization_config; add the one the checkpoint was published with ({"quant_method": "fp8", "weight_block_size": [128, 128], ...}).`)
    if (!isEngineDType(scale.dtype)) fail('TENSOR_DTYPE', `${scale.file}: scale tensor '${scaleName}' has dtype ${scale.dtype}; expected F32 (or F16/BF16).`)
    const [br, bc] = fp8.block
    const cols = shape[1]
    const grid = [Math.ceil(matrixRows / br), Math.ceil(cols / bc)]
    const stackedScale = t.shape.length === 3 ? [t.shape[0], ...grid] : grid
    if (scale.shape.join(',') !== stackedScale.join(',')) {
      fail('TENSOR_SHAPE', `${scale.file}: scale tensor '${scaleName}' has shape [${scale.shape}] but weight [${t.shape}] in ${br}x${bc} blocks (quantization_config.weight_block_size) needs [${stackedScale}].`)
    }
    used.add(scaleName)
    const source: Fp8Source = { storedDtype: t.dtype as Fp8DType, scale, matrix, firstRow, block: [br, bc], gridRows: grid[0], gridCols: grid[1] }
    return { name, file: t.file, dtype: 'F32', shape, offset, byteLength: shape[0] * shape[1], fp8: source }
  }

  /** Rows [firstRow, firstRow + rows) of matrix `matrix` of a stored [M, R, C] (or [R, C]) tensor. */
  const view = (name: string, t: StoredTensor, matrix: number, firstRow: number, rows: number): TensorEntry => {
    const fp8Dtype = t.dtype === 'F8_E4M3' || t.dtype === 'F8_E5M2'
    if (!fp8Dtype && !isEngineDType(t.dtype)) {
      fail('TENSOR_DTYPE', `${t.file}: tensor '${t.name}' has dtype ${t.dtype}, but the model computes with it; supported dtypes are F32, F16, BF16, and F8_E4M3/F8_E5M2 with <name>_scale_inv blocks.`)
    }
    if (t.shape.length < 2) {
      if (fp8Dtype) fail('TENSOR_DTYPE', `${t.file}: tensor '${t.name}' [${t.shape}] is ${t.dtype}; only F8 matrices (with block scales) are dequantized.`)
      return { name, file: t.file, dtype: t.dtype as DType, shape: [...t.shape], offset: t.offset, byteLength: t.byteLength }
    }
    const [R, C] = t.shape.slice(-2)
    const elemBytes = t.byteLength / Math.max(1, t.shape.reduce((a, b) => a * b, 1))
    const offset = t.offset + (matrix * R + firstRow) * C * elemBytes
    if (fp8Dtype) return fp8Entry(name, t, [rows, C], matrix, firstRow, R, offset)
    return { name, file: t.file, dtype: t.dtype as DType, shape: [rows, C], offset, byteLength: rows * C * elemBytes }
  }

  const checkShape = (t: StoredTensor, got: number[], want: number[], what: string) => {
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      // A size config.json leaves out is transformers' class default (a full-size model's): say so,
      // or "config.json implies [512, 2048]" points at a file that has no such number.
      // A null default is derived from keys that are named when absent (head_dim = hidden_size / heads).
      const absent = defaultedKeys(config, spec.family, SHAPE_KEYS).filter(a => a.value !== null)
      const hint = absent.length
        ? ` config.json has no ${absent.map(a => `'${a.key}'`).join(', ')}: transformers' default${absent.length === 1 ? ' was' : 's were'} used (${absent.map(a => `${a.key}=${JSON.stringify(a.value)}`).join(', ')}; src/model/configDefaults.ts); where the checkpoint's value differs, add it to config.json.`
        : ''
      fail('TENSOR_SHAPE', `${t.file}: tensor '${t.name}' has shape [${t.shape}] but config.json implies ${what ? `${what} ` : ''}[${want}].${hint}`)
    }
  }

  // transformers-v5 fused expert stacks, one layer at a time.
  spec.layers.forEach((layer, i) => {
    const experts = names.layers[i].experts
    if (layer.kind !== 'moe' || !experts?.length) return
    const p = `model.layers.${layer.index}.mlp.experts`
    const gateUp = stored.get(`${p}.gate_up_proj`)
    const down = stored.get(`${p}.down_proj`)
    if (!gateUp && !down) return
    const perExpert = experts.flatMap(e => [e.gate, e.up, e.down]).find(n => stored.has(n))
    if (perExpert) fail('TENSOR_LAYOUT', `${dir}: layer ${layer.index} stores its experts twice, per expert ('${perExpert}') and fused ('${(gateUp ?? down)!.name}'); keep one layout.`)
    if (!gateUp || !down) {
      fail('TENSOR_LAYOUT', `${dir}: layer ${layer.index} has '${(gateUp ?? down)!.name}' but not '${p}.${gateUp ? 'down_proj' : 'gate_up_proj'}'; this expert layout is not supported (${SUPPORTED_LAYOUTS}).`)
    }
    const [F, d] = expected.get(experts[0].gate)!
    const E = experts.length
    if (gateUp.shape.length === 3 && gateUp.shape[1] === d && gateUp.shape[2] === 2 * F && d !== 2 * F) {
      fail('TENSOR_LAYOUT', `${gateUp.file}: '${gateUp.name}' has shape [${gateUp.shape}] = [E, hidden, 2·F], the transposed layout (as GPT-OSS stores it); this expert layout is not supported (${SUPPORTED_LAYOUTS}).`)
    }
    if (gateUp.shape.length !== 3 || down.shape.length !== 3) {
      fail('TENSOR_LAYOUT', `${gateUp.file}: fused experts '${gateUp.name}' [${gateUp.shape}] / '${down.name}' [${down.shape}] are not 3-D stacks; this expert layout is not supported (${SUPPORTED_LAYOUTS}).`)
    }
    if (gateUp.shape[0] !== E || down.shape[0] !== E) {
      fail('TENSOR_SHAPE', `${gateUp.file}: fused experts of layer ${layer.index} stack ${gateUp.shape[0]} / ${down.shape[0]} experts, but config.json has ${E} experts per layer; fix the expert count in config.json or use the matching checkpoint.`)
    }
    checkShape(gateUp, gateUp.shape, [E, 2 * F, d], '[experts, 2 × expert intermediate size, hidden_size] =')
    checkShape(down, down.shape, [E, d, F], '[experts, hidden_size, expert intermediate size] =')
    experts.forEach((e: ExpertNames, j) => {
      tensors.set(e.gate, view(e.gate, gateUp, j, 0, F))
      tensors.set(e.up, view(e.up, gateUp, j, F, F))
      tensors.set(e.down, view(e.down, down, j, 0, d))
    })
    used.add(gateUp.name).add(down.name)
    fused = true
  })

  for (const [name, shape] of expected) {
    if (tensors.has(name)) continue
    // v5 Mixtral files name the router mlp.gate (conversion_mapping.py: WeightRenaming(".block_sparse_moe.gate", ".mlp.gate")).
    const t = stored.get(name) ?? (spec.family === 'mixtral' ? stored.get(name.replace('.block_sparse_moe.gate.', '.mlp.gate.')) : undefined)
    if (!t) {
      unsupportedExpertLayout(dir, name, spec, names, stored)
      fail('TENSOR_MISSING', `${dir}: tensor '${name}' is missing; the checkpoint does not match its config.json (${spec.architecture}).`)
    }
    checkShape(t, t.shape, shape, '')
    tensors.set(name, view(name, t, 0, 0, shape[0]))
    used.add(t.name)
  }
  return { tensors, used, expertLayout: fused ? 'fused' : 'per-expert' }
}

/**
 * A missing expert tensor whose layer has no per-expert tensors at all but stores something else
 * under its experts module is a layout question, not a config mismatch: say so.
 */
function unsupportedExpertLayout(dir: string, missing: string, spec: ModelSpec, names: ModelNames, stored: Map<string, StoredTensor>): void {
  const i = names.layers.findIndex(l => l.experts?.some(e => e.gate === missing || e.up === missing || e.down === missing))
  if (i < 0) return
  const experts = names.layers[i].experts!
  if (experts.some(e => stored.has(e.gate) || stored.has(e.up) || stored.has(e.down))) return
  const L = spec.layers[i].index
  const prefixes = [`model.layers.${L}.mlp.experts.`, `model.layers.${L}.block_sparse_moe.experts.`]
  const found = [...stored.values()].filter(t => prefixes.some(p => t.name.startsWith(p)))
  if (!found.length) return
  const list = found.slice(0, 4).map(t => `'${t.name}' [${t.shape}]`).join(', ')
  fail('TENSOR_LAYOUT', `${dir}: layer ${L} stores its experts as ${list}${found.length > 4 ? ', …' : ''}; this expert layout is not supported (${SUPPORTED_LAYOUTS}).`)
}
