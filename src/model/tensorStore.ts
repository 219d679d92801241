// The stored tensors of a checkpoint folder, by name: model.safetensors, or shards looked up only
// through model.safetensors.index.json (as transformers does: the index names the file of every
// tensor). Every file's header is validated (safetensors.ts) before anything is read.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { noWeightsHint } from './folderHints.ts'
import { readSafetensorsFile, type StoredTensor } from './safetensors.ts'

export const INDEX_FILE = 'model.safetensors.index.json'
export const SINGLE_FILE = 'model.safetensors'

export interface TensorStore {
  /** Every tensor the checkpoint provides; in a sharded checkpoint, the copy in the shard the index names. */
  tensors: Map<string, StoredTensor>
  /** The weight files read (absolute paths). */
  files: string[]
  /** What the folder holds that the loader does not read, for a warning (copies the index does not name). */
  notes: string[]
  /** Tensors a shard holds that the index does not list at all: name → shard file. */
  unindexed: Map<string, string>
}

function readIndex(file: string): Record<string, string> {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    fail('SAFETENSORS_INVALID', `${file} is not valid JSON (${(e as Error).message}); fix or re-download it.`)
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map
  if (!map || typeof map !== 'object' || Array.isArray(map)) fail('SAFETENSORS_INVALID', `${file} has no "weight_map" object (tensor name → shard file); re-download it.`)
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || !shard || shard.includes('/') || shard.includes('\\') || shard === '.' || shard === '..') {
      fail('SAFETENSORS_INVALID', `${file}: weight_map maps '${name}' to ${JSON.stringify(shard)}, which is not a file name in the model folder.`)
    }
  }
  return map as Record<string, string>
}

/** Opens the weight files of `dir` and returns its tensors; see TensorStore. */
export function openTensorStore(dir: string): TensorStore {
  const single = path.join(dir, SINGLE_FILE)
  const index = path.join(dir, INDEX_FILE)
  const notes: string[] = []
  // transformers prefers model.safetensors over the index when both are present (modeling_utils).
  if (fs.existsSync(single)) {
    if (fs.existsSync(index)) notes.push(`${dir} has both ${SINGLE_FILE} and ${INDEX_FILE}; as transformers does, ${SINGLE_FILE} is loaded and the index (and its shards) ignored.`)
    const tensors = new Map(readSafetensorsFile(single).map(t => [t.name, t]))
    return { tensors, files: [single], notes, unindexed: new Map() }
  }
  if (!fs.existsSync(index)) {
    const shards = fs.readdirSync(dir).filter(f => /^model-\d+-of-\d+\.safetensors$/.test(f))
    if (shards.length) fail('SAFETENSORS_INVALID', `${dir} has sharded weights but no ${INDEX_FILE}; restore the index file.`)
    fail('CHECKPOINT_NOT_FOUND', noWeightsHint(dir))
  }
  const map = readIndex(index)
  const shardNames = [...new Set(Object.values(map))].sort()
  const byShard = new Map<string, Map<string, StoredTensor>>()
  for (const shard of shardNames) {
    const file = path.join(dir, shard)
    if (!fs.existsSync(file)) fail('CHECKPOINT_NOT_FOUND', `${index} names shard ${shard}, which is missing from ${dir}; re-download it or fix the index.`)
    byShard.set(shard, new Map(readSafetensorsFile(file).map(t => [t.name, t])))
  }
  const tensors = new Map<string, StoredTensor>()
  for (const [name, shard] of Object.entries(map)) {
    const t = byShard.get(shard)!.get(name)
    if (!t) fail('SAFETENSORS_INVALID', `${index} maps tensor '${name}' to ${shard}, but ${path.join(dir, shard)} has no tensor '${name}'; the index and the shards do not belong together. Re-download them.`)
    tensors.set(name, t)
  }
  const strays: string[] = []
  const unindexed = new Map<string, string>()
  for (const [shard, inShard] of byShard) {
    for (const name of inShard.keys()) {
      if (map[name] === shard) continue
      strays.push(`'${name}' in ${shard}`)
      if (!Object.hasOwn(map, name)) unindexed.set(name, path.join(dir, shard))
    }
  }
  if (strays.length) {
    notes.push(`${strays.length} stored tensor(s) are not where ${INDEX_FILE} puts them and were not read (the index decides): ${strays.slice(0, 5).join(', ')}${strays.length > 5 ? ', …' : ''}.`)
  }
  return { tensors, files: shardNames.map(s => path.join(dir, s)), notes, unindexed }
}
