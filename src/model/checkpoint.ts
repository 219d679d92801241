// Opens a HuggingFace-format checkpoint folder: config.json, model.safetensors or sharded
// model-0000N-of-0000M.safetensors + model.safetensors.index.json, and tokenizer.json.
// Every tensor the architecture needs is checked (present, right shape, right dtype) and every stored
// tensor is accounted for (used, or an error / warning: unusedTensors.ts) before any work starts; the
// config's layer and expert counts are checked against the stored names before anything is allocated
// per layer. Weights are checked for NaN/Inf once each, when first read.
import fs from 'node:fs'
import path from 'node:path'
import { fail, HarnessError } from '../errors.ts'
import { parseModelSpec, type ModelSpec } from './modelSpec.ts'
import { countNonFinite, decodeToFloat32, readTensorBytes, type StoredTensor, type TensorEntry } from './safetensors.ts'
import { resolveTensors } from './tensorLayout.ts'
import { openTensorStore } from './tensorStore.ts'
import { auditUnusedTensors, type UnusedTensor } from './unusedTensors.ts'
import { expectedShapes, tensorNames, type ModelNames } from './tensorNames.ts'
import { loadTokenizer, type TextTokenizer } from './tokenizer.ts'
import { checkpointFingerprint } from './fingerprint.ts'
import { missingFolderHint, noConfigHint } from './folderHints.ts'
import { NOVICES_FILE, readVariantHooks, VARIANT_FILE } from './variantManifest.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'

export interface Checkpoint {
  dir: string
  config: Record<string, unknown>
  spec: ModelSpec
  names: ModelNames
  /**
   * Every tensor the model uses, by its canonical (transformers v4 per-expert) name, as the engine
   * reads it: fused v5 expert stacks appear as per-expert views, F8 weights as F32 entries.
   */
  tensors: Map<string, TensorEntry>
  /** Stored tensors the model does not use (other dtypes, unrecognised extras, ...), never decoded. */
  unused: UnusedTensor[]
  /** 'fused' when the experts were stored as transformers-v5 stacks. */
  expertLayout: 'per-expert' | 'fused'
  /** Hooks of a harness-format variant folder (moe_harness_variant.json), applied under every edit. */
  baseEdits?: VariantEdits
  /** The tensor decoded to float32 (a fresh copy). Throws TENSOR_NONFINITE on NaN/Inf unless allowed. */
  read(name: string): Float32Array
  /** The tensor's bytes in `tensors.get(name).dtype` (F8 weights dequantized to F32). Same check as read(). */
  readRaw(name: string): Buffer
  /**
   * Reads the tensor once to refuse NaN/Inf (TENSOR_NONFINITE) without keeping it: for weights the
   * engine maps from the file instead of reading (moeGraph.ts). No-op when allowed or already checked.
   */
  checkFinite(name: string): void
  /** Whether NaN/Inf weights are scored rather than refused (--allow-nonfinite). */
  readonly allowNonfinite: boolean
  tokenizer(): TextTokenizer
  /** sha256 over everything that can change a score: config.json, the resolved tokenizer settings, variant files, tensors (fingerprint.ts). */
  fingerprint(): string
}

function readJsonFile(file: string, code: 'CONFIG_INVALID' | 'SAFETENSORS_INVALID'): Record<string, unknown> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    fail('CHECKPOINT_NOT_FOUND', `Cannot read ${file}: ${(e as Error).message}`)
  }
  try {
    const v = JSON.parse(text)
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object')
    return v
  } catch (e) {
    fail(code, `${file} is not valid JSON (${(e as Error).message}); fix or re-download it.`)
  }
}

export interface CheckpointOptions {
  /** Score weights that hold NaN/Inf instead of refusing them (--allow-nonfinite). */
  allowNonfinite?: boolean
  /** Where warnings go (once per open); default stderr. Pool workers pass a no-op: the main thread warned. */
  warn?: (message: string) => void
}

/**
 * config.json's layer count against the stored layer indices, before parseModelSpec allocates per
 * layer: `num_hidden_layers: 1e9` must be a clear mismatch, not Node running out of memory.
 */
function checkLayerCount(dir: string, config: Record<string, unknown>, stored: Map<string, StoredTensor>): void {
  const layers = config.num_hidden_layers
  if (typeof layers !== 'number' || !Number.isInteger(layers)) return // parseModelSpec names the field
  let present = 0
  for (const name of stored.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name)
    if (m) present = Math.max(present, Number(m[1]) + 1)
  }
  if (layers > present) {
    // Any other config error (an unknown architecture, a bad field) is reported first, as before.
    try {
      parseModelSpec({ ...config, num_hidden_layers: Math.max(1, present) })
    } catch (e) {
      if (!(e as Error).message.includes('num_hidden_layers')) throw e
    }
    fail('TENSOR_MISSING', `${dir}: config.json has num_hidden_layers ${layers}, but the checkpoint stores tensors for ${present} layer(s)${present ? ` (model.layers.0 … model.layers.${present - 1})` : ''}; fix num_hidden_layers or restore the missing weight files.`)
  }
}

/** The same for the expert count, after parseModelSpec (O(layers)) and before tensorNames (O(layers × experts)). */
function checkExpertCount(dir: string, spec: ModelSpec, stored: Map<string, StoredTensor>): void {
  let present = 0
  for (const t of stored.values()) {
    const m = /\.experts\.(\d+)\./.exec(t.name)
    if (m) present = Math.max(present, Number(m[1]) + 1)
    else if (/\.experts\.(gate_up_proj|down_proj)$/.test(t.name) && t.shape.length === 3) present = Math.max(present, t.shape[0])
  }
  const most = Math.max(0, ...spec.layers.map(l => (l.kind === 'moe' ? l.numExperts : 0)))
  if (most > present) {
    fail('TENSOR_MISSING', `${dir}: config.json gives MoE layers ${most} experts, but the checkpoint stores ${present}; fix the expert count in config.json (num_local_experts / num_experts / n_routed_experts) or use the matching checkpoint.`)
  }
}

function describeNonFinite(file: string, name: string, nan: number, inf: number, total: number): string {
  const parts = [nan ? `${nan} NaN` : '', inf ? `${inf} ±Inf` : ''].filter(Boolean).join(' and ')
  return `${file}: tensor '${name}' holds ${parts} of its ${total} values, so every score would be NaN; the checkpoint is corrupt (or saved from a diverged run). Re-export it, or pass --allow-nonfinite to score it anyway (in a sweep config: allowNonfinite: true, or a list of model names).`
}

/**
 * parseModelSpec's errors begin with "config.json"; they are rethrown naming the file itself, so a sweep
 * over several models (or a variant whose model moved) says which config.json holds the bad field.
 */
function inConfigFile<T>(configFile: string, parse: () => T): T {
  try {
    return parse()
  } catch (e) {
    if (e instanceof HarnessError && e.message.startsWith('config.json')) e.message = configFile + e.message.slice('config.json'.length)
    throw e
  }
}

export function openCheckpoint(dirArg: string, options: CheckpointOptions = {}): Checkpoint {
  const dir = path.resolve(dirArg)
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) fail('CHECKPOINT_NOT_FOUND', missingFolderHint(dirArg, dir))
  const configFile = path.join(dir, 'config.json')
  if (!fs.existsSync(configFile)) fail('CHECKPOINT_NOT_FOUND', noConfigHint(dir))
  const config = readJsonFile(configFile, 'CONFIG_INVALID')
  const store = openTensorStore(dir)
  checkLayerCount(dir, config, store.tensors)
  const spec = inConfigFile(configFile, () => parseModelSpec(config))
  checkExpertCount(dir, spec, store.tensors)
  const names = tensorNames(spec)
  const expected = expectedShapes(spec)
  for (const name of expected.keys()) {
    const shard = store.unindexed.get(name)
    if (shard) fail('SAFETENSORS_INVALID', `${dir}/model.safetensors.index.json does not list tensor '${name}', which ${shard} holds; the index decides where every tensor is read, so fix or re-download it.`)
  }
  const { tensors, used, expertLayout } = resolveTensors(dir, spec, names, expected, store.tensors, config)
  const { unused, warnings } = auditUnusedTensors(dir, spec, config, store.tensors, used)
  const warn = options.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`))
  for (const m of [...store.notes, ...warnings]) warn(m)

  const checked = new Set<string>()
  const load = (name: string): { entry: TensorEntry; bytes: Buffer } => {
    const entry = tensors.get(name) ?? fail('TENSOR_MISSING', `${dir}: tensor '${name}' is missing.`)
    const bytes = readTensorBytes(entry)
    if (!options.allowNonfinite && !checked.has(name)) {
      const { nan, inf } = countNonFinite(bytes, entry.dtype)
      if (nan || inf) fail('TENSOR_NONFINITE', describeNonFinite(entry.file, name, nan, inf, entry.shape.reduce((a, b) => a * b, 1)))
      checked.add(name)
    }
    return { entry, bytes }
  }

  let tokenizer: TextTokenizer | undefined
  let fingerprint: string | undefined
  const baseEdits = readVariantHooks(dir)
  return {
    dir, config, spec, names, tensors, unused, expertLayout, baseEdits,
    read(name) {
      const { entry, bytes } = load(name)
      return decodeToFloat32(bytes, entry.dtype)
    },
    readRaw(name) {
      return load(name).bytes
    },
    checkFinite(name) {
      if (!options.allowNonfinite && !checked.has(name)) load(name)
    },
    allowNonfinite: options.allowNonfinite ?? false,
    tokenizer() {
      return (tokenizer ??= loadTokenizer(dir, config))
    },
    fingerprint() {
      return (fingerprint ??= checkpointFingerprint(dir, config, store.tensors, [VARIANT_FILE, NOVICES_FILE]))
    },
  }
}
