// A prepared variant on disk, for the worker pool: the model path and its edits (hooks as JSON,
// replaced tensors as safetensors in the checkpoint's dtype: overrides.safetensors for those held in
// memory, plus the method's spill files, hard-linked in as overrides-N.safetensors). Workers rebuild
// the graph from these, mapping the replaced tensors from these files (never decoding them whole).
// The one module that knows the folder's file names; the sweep publishes folders through it.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import type { DType } from '../model/safetensors.ts'
import { isStoredOverride, overrideValues, readStoredOverrides, storeOverrides, type StoredOverride } from './overrideTensor.ts'
import type { LayerHooks, VariantEdits } from './variantEdits.ts'

const EDITS_FILE = 'edits.json'
const OVERRIDES_FILE = 'overrides.safetensors'
/** overrides.safetensors, then the linked spill files overrides-0.safetensors, overrides-1... */
const OVERRIDES_PATTERN = /^overrides(-\d+)?\.safetensors$/

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
  const inMemory: Record<string, Float32Array> = {}
  const stored: Record<string, StoredOverride> = {}
  for (const [name, t] of Object.entries(edits.overrides)) {
    if (isStoredOverride(t)) stored[name] = t
    else inMemory[name] = t
  }
  if (Object.keys(inMemory).length) storeOverrides(path.join(tmp, OVERRIDES_FILE), inMemory, dtypeOf)
  addStoredFiles(tmp, stored, dtypeOf)
  // Written last: its presence marks a complete folder (isVariantFolder).
  fs.writeFileSync(path.join(tmp, EDITS_FILE), JSON.stringify(json))
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
  return { modelDir: json.modelDir, edits: { layers, overrides: overrideTensors(dir) } }
}

/**
 * Puts stored tensors into the folder `tmp` as overrides-N.safetensors: a file whose tensors are all
 * still current is hard-linked (same disk: no copy) or copied; tensors of a file that also holds
 * superseded ones are rewritten (in `dtypeOf`, from their values) so no name appears twice.
 */
function addStoredFiles(tmp: string, stored: Record<string, StoredOverride>, dtypeOf: (name: string) => DType): void {
  const byFile = new Map<string, string[]>()
  for (const [name, t] of Object.entries(stored)) byFile.set(t.file, [...(byFile.get(t.file) ?? []), name])
  let n = 0
  for (const [file, names] of byFile) {
    const target = path.join(tmp, `overrides-${n++}.safetensors`)
    const inFile = readStoredOverrides(file)
    const whole = Object.keys(inFile).length === names.length && names.every(name => inFile[name] && inFile[name].offset === stored[name].offset)
    if (whole) {
      try {
        fs.linkSync(file, target)
      } catch {
        fs.copyFileSync(file, target) // another disk, or links not allowed
      }
    } else {
      storeOverrides(target, Object.fromEntries(names.map(name => [name, overrideValues(stored[name])])), dtypeOf)
    }
  }
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

/** The folder's replaced tensors, from every overrides file (headers checked against the file sizes). */
function overrideTensors(dir: string): Record<string, StoredOverride> {
  const out: Record<string, StoredOverride> = {}
  for (const name of fs.readdirSync(dir).filter(f => OVERRIDES_PATTERN.test(f)).sort()) {
    const file = path.join(dir, name)
    let tensors: Record<string, StoredOverride>
    try {
      tensors = readStoredOverrides(file)
    } catch (e) {
      return damaged(file, dir, (e as Error).message)
    }
    for (const [tensor, t] of Object.entries(tensors)) {
      if (out[tensor]) damaged(file, dir, `tensor '${tensor}' is also in ${path.basename(out[tensor].file)}`)
      out[tensor] = t
    }
  }
  return out
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
    overrideTensors(dir)
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
