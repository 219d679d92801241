// A prepared variant on disk, for the worker pool: the model path and its edits (hooks as JSON,
// replaced tensors as safetensors in the checkpoint's dtype). Workers rebuild the graph from these.
// The one module that knows the folder's file names; the sweep publishes folders through it.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { decodeToFloat32, encodeFromFloat32, readSafetensorsHeader, readTensorBytes, writeSafetensors, type DType } from '../model/safetensors.ts'
import type { LayerHooks, VariantEdits } from './variantEdits.ts'

const EDITS_FILE = 'edits.json'
const OVERRIDES_FILE = 'overrides.safetensors'

interface EditsJson {
  modelDir: string
  layers: Record<string, Omit<LayerHooks, 'novices'> & { novices?: Record<string, number[]> }>
}

export function writeVariantFiles(dir: string, modelDir: string, edits: VariantEdits, dtypeOf: (name: string) => DType): void {
  const tmp = `${dir}.tmp-${process.pid}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  const json: EditsJson = { modelDir, layers: {} }
  for (const [l, h] of Object.entries(edits.layers)) {
    const { novices, ...rest } = h
    json.layers[l] = { ...rest, ...(novices ? { novices: Object.fromEntries(Object.entries(novices).map(([e, v]) => [e, Array.from(v)])) } : {}) }
  }
  fs.writeFileSync(path.join(tmp, EDITS_FILE), JSON.stringify(json))
  const tensors = Object.fromEntries(Object.entries(edits.overrides).map(([name, data]) => {
    const dtype = dtypeOf(name)
    return [name, { dtype, shape: [data.length], data: encodeFromFloat32(data, dtype) }]
  }))
  if (Object.keys(tensors).length) writeSafetensors(path.join(tmp, OVERRIDES_FILE), tensors)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  fs.renameSync(tmp, dir)
}

export function readVariantFiles(dir: string): { modelDir: string; edits: VariantEdits } {
  const file = path.join(dir, EDITS_FILE)
  if (!fs.existsSync(file)) fail('VARIANT_INVALID', `${dir} is not a prepared variant (no ${EDITS_FILE}).`)
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as EditsJson
  const layers: VariantEdits['layers'] = {}
  for (const [l, h] of Object.entries(json.layers)) {
    const { novices, ...rest } = h
    layers[Number(l)] = { ...rest, ...(novices ? { novices: Object.fromEntries(Object.entries(novices).map(([e, v]) => [e, Float32Array.from(v)])) } : {}) }
  }
  const overrides: Record<string, Float32Array> = {}
  const ov = path.join(dir, OVERRIDES_FILE)
  if (fs.existsSync(ov)) for (const e of readSafetensorsHeader(ov)) overrides[e.name] = decodeToFloat32(readTensorBytes(e), e.dtype)
  return { modelDir: json.modelDir, edits: { layers, overrides } }
}

/** Whether `dir` holds a complete prepared variant (its files are renamed in whole, so the edits file marks it). */
export function isVariantFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, EDITS_FILE))
}

/**
 * Publishes a content-addressed variant folder without ever removing one another process may be
 * reading: the files are staged under a private name and renamed into place; if a cooperating
 * process published the same (identical) folder first, ours is dropped. The folder is keyed by content
 * (fingerprint + edits) but names the model folder it was built from: the same weights at a new path
 * (a moved or re-created checkpoint) get it re-published.
 */
export function publishVariantFolder(dir: string, modelDir: string, edits: VariantEdits, dtypeOf: (name: string) => DType): void {
  const write = (staged: string) => writeVariantFiles(staged, modelDir, edits, dtypeOf)
  const privateName = (what: string) => `${dir}.${what}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  const published = isVariantFolder(dir)
  if (published && readVariantFiles(dir).modelDir === modelDir) return
  if (published) {
    const staged = privateName('staged')
    const aside = privateName('old')
    write(staged)
    try {
      fs.renameSync(dir, aside)
      fs.renameSync(staged, dir)
    } catch {
      // Another process on this store re-published it first: its copy is as good as ours.
      fs.rmSync(staged, { recursive: true, force: true })
    }
    fs.rmSync(aside, { recursive: true, force: true })
    return
  }
  const staged = privateName('staged')
  write(staged)
  try {
    fs.renameSync(staged, dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e
    if (!isVariantFolder(dir)) {
      // A folder left without its files (by an older harness): replace it.
      fs.rmSync(dir, { recursive: true, force: true })
      fs.renameSync(staged, dir)
      return
    }
    fs.rmSync(staged, { recursive: true, force: true })
  }
}
