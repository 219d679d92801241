// Nothing stored is silently ignored (issue 9 §4). After the model is resolved, every stored tensor
// is used or accounted for here:
//  - a float tensor of a module the architecture has, but config.json leaves out (a layer index
//    >= num_hidden_layers, an expert >= the expert count, a shared expert, attention bias or dense
//    MLP the config turns off, an untied lm_head when tie_word_embeddings is true): an error, since
//    the file and the config disagree about the model and the score would silently differ;
//  - a float tensor the architecture does not know (a rotary inv_freq buffer, an exporter's extra):
//    a warning naming it (transformers reports such keys as "unexpected" and loads the model);
//  - a tensor of another dtype (I64 position_ids, a BOOL mask, F64 buffers) that the model does not
//    use: fine, and never decoded;
//  - DeepSeek-V3's multi-token-prediction layers (model.layers.N.. with N >= num_hidden_layers,
//    num_nextn_predict_layers of them): a warning; transformers skips them too
//    (_keys_to_ignore_on_load_unexpected in modeling_deepseek_v3.py), and scoring does not use them.
import { configValue } from './configDefaults.ts'
import { fail } from '../errors.ts'
import type { ModelSpec } from './modelSpec.ts'
import { readTensorBytes, type StoredTensor } from './safetensors.ts'

export interface UnusedTensor {
  name: string
  dtype: string
  reason: 'other-dtype' | 'unrecognised' | 'multi-token-prediction' | 'tied-copy'
}

const ATTN = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].flatMap(m => [`self_attn.${m}.weight`, `self_attn.${m}.bias`])
const GLU = (prefix: string, mats: string[]) => mats.map(m => `${prefix}.${m}.weight`)
const PROJ = ['gate_proj', 'up_proj', 'down_proj']
const FUSED = ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj']

/** Module parameters each family's transformers modeling code can create, per decoder layer ('#' = index). */
const LAYER_MODULES: Record<string, string[]> = {
  mixtral: [...ATTN, 'block_sparse_moe.gate.weight', 'mlp.gate.weight', ...GLU('block_sparse_moe.experts.#', ['w1', 'w2', 'w3']), ...FUSED],
  olmoe: [...ATTN, 'self_attn.q_norm.weight', 'self_attn.k_norm.weight', 'mlp.gate.weight', ...GLU('mlp.experts.#', PROJ), ...FUSED],
  qwen2_moe: [...ATTN, 'mlp.gate.weight', ...GLU('mlp.experts.#', PROJ), ...FUSED, ...GLU('mlp', PROJ), ...GLU('mlp.shared_expert', PROJ), 'mlp.shared_expert_gate.weight'],
  qwen3_moe: [...ATTN, 'self_attn.q_norm.weight', 'self_attn.k_norm.weight', 'mlp.gate.weight', ...GLU('mlp.experts.#', PROJ), ...FUSED, ...GLU('mlp', PROJ)],
}
const MLA = ['q_proj', 'q_a_proj', 'q_b_proj', 'kv_a_proj_with_mqa', 'kv_b_proj', 'o_proj'].flatMap(m => [`self_attn.${m}.weight`, `self_attn.${m}.bias`])
  .concat(['self_attn.q_a_layernorm.weight', 'self_attn.kv_a_layernorm.weight'])
const DEEPSEEK = [...MLA, 'mlp.gate.weight', 'mlp.gate.e_score_correction_bias', ...GLU('mlp.experts.#', PROJ), ...FUSED, ...GLU('mlp', PROJ), ...GLU('mlp.shared_experts', PROJ)]
LAYER_MODULES.deepseek_v2 = DEEPSEEK
LAYER_MODULES.deepseek_v3 = DEEPSEEK
const COMMON = ['input_layernorm.weight', 'post_attention_layernorm.weight']

/** A stored name with its layer and expert indices replaced by '#', and an F8 scale mapped to its weight. */
function template(name: string): { key: string; layer?: number; expert?: number } {
  const base = name.replace(/_scale_inv$/, '')
  const layer = /^model\.layers\.(\d+)\./.exec(base)
  const expert = /\.experts\.(\d+)\./.exec(base)
  const key = base.replace(/^model\.layers\.\d+\./, 'model.layers.#.').replace(/\.experts\.\d+\./, '.experts.#.')
  return { key, layer: layer ? Number(layer[1]) : undefined, expert: expert ? Number(expert[1]) : undefined }
}

const isFloat = (dtype: string) => dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype.startsWith('F8_')

function sameBytes(a: StoredTensor, b: StoredTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join(',') !== b.shape.join(',')) return false
  return readTensorBytes(a).equals(readTensorBytes(b))
}

/**
 * Classifies every stored tensor the resolved model does not read; throws TENSOR_UNUSED for a module
 * the config leaves out, returns the rest with one warning line for what deserves the user's eye.
 */
export function auditUnusedTensors(dir: string, spec: ModelSpec, config: Record<string, unknown>, stored: Map<string, StoredTensor>, used: Set<string>): { unused: UnusedTensor[]; warnings: string[] } {
  const layerModules = [...COMMON, ...(LAYER_MODULES[spec.family] ?? [])]
  const known = new Set(['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight', ...layerModules.map(m => `model.layers.#.${m}`)])
  const numLayers = spec.layers.length
  const mtpValue = spec.family === 'deepseek_v3' ? configValue(config, spec.family, 'num_nextn_predict_layers') : 0
  const mtp = typeof mtpValue === 'number' && Number.isInteger(mtpValue) && mtpValue > 0 ? mtpValue : 0
  const unused: UnusedTensor[] = []
  const conflicts: string[] = []
  let offModule = false
  for (const t of stored.values()) {
    if (used.has(t.name)) continue
    if (!isFloat(t.dtype)) { unused.push({ name: t.name, dtype: t.dtype, reason: 'other-dtype' }); continue }
    const { key, layer, expert } = template(t.name)
    if (layer !== undefined && layer >= numLayers && layer < numLayers + mtp) {
      unused.push({ name: t.name, dtype: t.dtype, reason: 'multi-token-prediction' })
      continue
    }
    if (t.name === 'lm_head.weight' && spec.tieWordEmbeddings) {
      // Some exporters store the tied head as a copy; only a different head is a contradiction.
      const embed = stored.get('model.embed_tokens.weight')
      if (embed && sameBytes(t, embed)) { unused.push({ name: t.name, dtype: t.dtype, reason: 'tied-copy' }); continue }
      conflicts.push(`'lm_head.weight' (tie_word_embeddings is true, so transformers uses model.embed_tokens.weight as the head; set it to false if this is the real head)`)
      continue
    }
    if (!known.has(key)) { unused.push({ name: t.name, dtype: t.dtype, reason: 'unrecognised' }); continue }
    const moe = spec.layers.find(l => l.index === layer)
    let why = ''
    if (layer !== undefined && layer >= numLayers) why = ` (layer ${layer} >= num_hidden_layers ${numLayers})`
    else if (expert !== undefined && moe?.kind === 'moe' && expert >= moe.numExperts) why = ` (expert ${expert} >= the ${moe.numExperts} experts config.json gives layer ${layer})`
    else if (expert !== undefined && moe?.kind === 'dense') why = ` (layer ${layer} is a dense layer by config.json)`
    else offModule = true
    conflicts.push(`'${t.name}'${why}`)
  }
  if (conflicts.length) {
    fail('TENSOR_UNUSED', `${dir}: ${conflicts.length} stored tensor(s) belong to modules of ${spec.architecture} that config.json does not use, so the model would silently differ from the file: ${conflicts.slice(0, 5).join('; ')}${conflicts.length > 5 ? '; …' : ''}.${offModule ? ' config.json turns some of these modules off (check attention_bias, the shared-expert settings, mlp_only_layers / decoder_sparse_step / first_k_dense_replace / moe_layer_freq).' : ''} Fix config.json to describe the stored model, or remove the tensors.`)
  }
  const warnings: string[] = []
  const unknown = unused.filter(u => u.reason === 'unrecognised')
  if (unknown.length) warnings.push(`${dir}: ${unknown.length} stored tensor(s) are not part of ${spec.architecture} and are ignored: ${unknown.slice(0, 8).map(u => u.name).join(', ')}${unknown.length > 8 ? ', …' : ''}.`)
  const mtpCount = unused.filter(u => u.reason === 'multi-token-prediction').length
  if (mtpCount) warnings.push(`${dir}: ${mtpCount} tensor(s) of the multi-token-prediction layer(s) (num_nextn_predict_layers) are not used for scoring, as in transformers.`)
  return { unused, warnings }
}
