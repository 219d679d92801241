// Opens a HuggingFace-format checkpoint folder: config.json, model.safetensors or sharded
// model-0000N-of-0000M.safetensors + model.safetensors.index.json, and tokenizer.json.
// Every tensor the architecture needs is checked (present, right shape) before any work starts.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { parseModelSpec, type ModelSpec } from './modelSpec.ts'
import { decodeToFloat32, readSafetensorsHeader, readTensorBytes, type TensorEntry } from './safetensors.ts'
import { expectedShapes, tensorNames, type ModelNames } from './tensorNames.ts'
import { loadTokenizer, type TextTokenizer } from './tokenizer.ts'
import { NOVICES_FILE, readVariantHooks, VARIANT_FILE } from './variantManifest.ts'
import type { VariantEdits } from '../engine/hooks.ts'

export interface Checkpoint {
  dir: string
  config: Record<string, unknown>
  spec: ModelSpec
  names: ModelNames
  tensors: Map<string, TensorEntry>
  /** Hooks of a harness-format variant folder (moe_harness_variant.json), applied under every edit. */
  baseEdits?: VariantEdits
  /** The tensor decoded to float32 (a fresh copy). */
  read(name: string): Float32Array
  /** The tensor's raw bytes in its stored dtype. */
  readRaw(name: string): Buffer
  tokenizer(): TextTokenizer
  /** sha256 over config.json, tokenizer.json and every tensor's bytes. */
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

function tensorFiles(dir: string): string[] {
  const index = path.join(dir, 'model.safetensors.index.json')
  if (fs.existsSync(index)) {
    const json = readJsonFile(index, 'SAFETENSORS_INVALID')
    const map = json.weight_map as Record<string, string> | undefined
    if (!map || typeof map !== 'object') fail('SAFETENSORS_INVALID', `${index} has no weight_map object.`)
    const files = [...new Set(Object.values(map))].sort()
    for (const f of files) {
      if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) fail('SAFETENSORS_INVALID', `${index}: invalid shard name ${JSON.stringify(f)}.`)
      if (!fs.existsSync(path.join(dir, f))) fail('CHECKPOINT_NOT_FOUND', `${index} names shard ${f}, which is missing from ${dir}.`)
    }
    return files.map(f => path.join(dir, f))
  }
  const single = path.join(dir, 'model.safetensors')
  if (fs.existsSync(single)) return [single]
  const shards = fs.readdirSync(dir).filter(f => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort()
  if (shards.length) fail('SAFETENSORS_INVALID', `${dir} has sharded weights but no model.safetensors.index.json; restore the index file.`)
  fail('CHECKPOINT_NOT_FOUND', `${dir} has no model.safetensors (or sharded model-0000N-of-0000M.safetensors with model.safetensors.index.json).`)
}

export function openCheckpoint(dirArg: string): Checkpoint {
  const dir = path.resolve(dirArg)
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    fail('CHECKPOINT_NOT_FOUND', `Model folder ${dirArg} does not exist; pass a HuggingFace-format folder with config.json and *.safetensors.`)
  }
  const configFile = path.join(dir, 'config.json')
  if (!fs.existsSync(configFile)) fail('CHECKPOINT_NOT_FOUND', `${dir} has no config.json; it is not a HuggingFace checkpoint folder.`)
  const config = readJsonFile(configFile, 'CONFIG_INVALID')
  const spec = parseModelSpec(config)
  const names = tensorNames(spec)

  const tensors = new Map<string, TensorEntry>()
  for (const file of tensorFiles(dir)) {
    for (const entry of readSafetensorsHeader(file)) tensors.set(entry.name, entry)
  }
  for (const [name, shape] of expectedShapes(spec)) {
    const entry = tensors.get(name)
    if (!entry) {
      fail('TENSOR_MISSING', `${dir}: tensor '${name}' is missing; the checkpoint does not match its config.json (${spec.architecture}).`)
    }
    if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
      fail('TENSOR_SHAPE', `${dir}: tensor '${name}' has shape [${entry.shape}] but config.json implies [${shape}].`)
    }
  }

  let tokenizer: TextTokenizer | undefined
  let fingerprint: string | undefined
  const baseEdits = readVariantHooks(dir)
  return {
    dir, config, spec, names, tensors, baseEdits,
    read(name) {
      const entry = tensors.get(name) ?? fail('TENSOR_MISSING', `${dir}: tensor '${name}' is missing.`)
      return decodeToFloat32(readTensorBytes(entry), entry.dtype)
    },
    readRaw(name) {
      const entry = tensors.get(name) ?? fail('TENSOR_MISSING', `${dir}: tensor '${name}' is missing.`)
      return readTensorBytes(entry)
    },
    tokenizer() {
      return (tokenizer ??= loadTokenizer(dir, config))
    },
    fingerprint() {
      if (fingerprint) return fingerprint
      const h = crypto.createHash('sha256')
      h.update(fs.readFileSync(configFile))
      for (const extra of ['tokenizer.json', VARIANT_FILE, NOVICES_FILE]) {
        const f = path.join(dir, extra)
        if (fs.existsSync(f)) h.update(fs.readFileSync(f))
      }
      for (const name of [...tensors.keys()].sort()) {
        const e = tensors.get(name)!
        h.update(`${name}|${e.dtype}|${e.shape.join('x')}|`)
        h.update(readTensorBytes(e))
      }
      return (fingerprint = h.digest('hex'))
    },
  }
}
