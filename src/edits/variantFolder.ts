// A prepared variant on disk, for the worker pool: the model path and its edits (hooks as JSON,
// replaced tensors as safetensors in the checkpoint's dtype). Workers rebuild the graph from these.
// The one module that knows the folder's file names; the sweep publishes folders through it.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { decodeToFloat32, encodeFromFloat32, readSafetensorsHeader, readTensorBytes, writeSafetensors, type DType, type TensorEntry } from '../model/safetensors.ts'
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

/**
 * Reads a prepared variant. Errors: VARIANT_INVALID naming the file when the folder has no edits
 * file, or when its edits file / overrides are damaged (not JSON, wrong shape, unreadable
 * safetensors) — a sweep rebuilds such a folder (see variantFolderState), a worker reports it.
 */
export function readVariantFiles(dir: string): { modelDir: string; edits: VariantEdits } {
  const json = readEditsJson(dir)
  const layers: VariantEdits['layers'] = {}
  for (const [l, h] of Object.entries(json.layers)) {
    const { novices, ...rest } = h
    layers[Number(l)] = { ...rest, ...(novices ? { novices: Object.fromEntries(Object.entries(novices).map(([e, v]) => [e, Float32Array.from(v)])) } : {}) }
  }
  const overrides: Record<string, Float32Array> = {}
  for (const e of overrideEntries(dir)) overrides[e.name] = decodeToFloat32(readTensorBytes(e), e.dtype)
  return { modelDir: json.modelDir, edits: { layers, overrides } }
}

const damaged = (file: string, dir: string, why: string): never =>
  fail('VARIANT_INVALID', `${file} is damaged (${why}); delete ${dir} and rerun to rebuild it.`)

/** The edits file, parsed and checked for shape (not for values: those were written by us). */
function readEditsJson(dir: string): EditsJson {
  const file = path.join(dir, EDITS_FILE)
  if (!fs.existsSync(file)) fail('VARIANT_INVALID', `${dir} is not a prepared variant (no ${EDITS_FILE}).`)
  let json: EditsJson
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as EditsJson
  } catch (e) {
    return damaged(file, dir, (e as Error).message)
  }
  if (!json || typeof json !== 'object' || typeof json.modelDir !== 'string' || !json.layers || typeof json.layers !== 'object' || Array.isArray(json.layers)) {
    damaged(file, dir, 'expected {"modelDir": string, "layers": {...}}')
  }
  for (const [l, h] of Object.entries(json.layers)) {
    if (!h || typeof h !== 'object' || !Number.isInteger(Number(l))) damaged(file, dir, `layer "${l}" is not a layer's hooks`)
  }
  return json
}

/** The overrides file's entries (its header checked against the file size), or none. */
function overrideEntries(dir: string): TensorEntry[] {
  const ov = path.join(dir, OVERRIDES_FILE)
  if (!fs.existsSync(ov)) return []
  try {
    return readSafetensorsHeader(ov)
  } catch (e) {
    return damaged(ov, dir, (e as Error).message)
  }
}

/** Whether `dir` holds a complete prepared variant (its files are renamed in whole, so the edits file marks it). */
export function isVariantFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, EDITS_FILE))
}

/**
 * 'missing' (no folder or no edits file), 'damaged' (its files do not read back: truncated JSON,
 * wrong shape, unreadable overrides; `warn` is told which file and why) or 'valid'. The folders are
 * ours (under .harness) and content-addressed, so a damaged one is safe to rebuild.
 */
export function variantFolderState(dir: string, warn: (message: string) => void = defaultWarn): 'missing' | 'damaged' | 'valid' {
  if (!isVariantFolder(dir)) return 'missing'
  try {
    readEditsJson(dir)
    overrideEntries(dir)
    return 'valid'
  } catch (e) {
    warn(`damaged prepared-variant cache: ${(e as Error).message.replace(/; delete .*$/, '')}; rebuilding it`)
    return 'damaged'
  }
}

const defaultWarn = (m: string) => process.stderr.write(`warning: ${m}\n`)

/**
 * Publishes a content-addressed variant folder without ever removing one another process may be
 * reading: the files are staged under a private name and renamed into place; if a cooperating
 * process published the same (identical) folder first, ours is dropped. The folder is keyed by content
 * (fingerprint + edits) but names the model folder it was built from: the same weights at a new path
 * (a moved or re-created checkpoint) get it re-published, and so does a damaged folder (with a
 * warning naming the damaged file).
 */
export function publishVariantFolder(dir: string, modelDir: string, edits: VariantEdits, dtypeOf: (name: string) => DType, warn: (message: string) => void = defaultWarn): void {
  const write = (staged: string) => writeVariantFiles(staged, modelDir, edits, dtypeOf)
  const privateName = (what: string) => `${dir}.${what}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  const state = variantFolderState(dir, warn)
  const published = state !== 'missing'
  if (state === 'valid' && readEditsJson(dir).modelDir === modelDir) return
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
