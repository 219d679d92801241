// A prepared variant on disk, for the worker pool: the model path and its edits (hooks as JSON,
// replaced tensors as safetensors in the checkpoint's dtype: overrides.safetensors for those held in
// memory, plus the method's spill files, hard-linked in as overrides-N.safetensors). Workers rebuild
// the graph from these, mapping the replaced tensors from these files (never decoding them whole).
// The one module that knows the folder's file names; the sweep publishes folders through it.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fail, isHarnessError } from '../errors.ts'
import { processAlive } from '../util/processAlive.ts'
import { withFileErrors } from '../util/fileErrors.ts'
import type { DType } from '../model/safetensors.ts'
import { removeDeadSpills } from './overrideSpill.ts'
import { isStoredOverride, overrideDigest, overrideValues, readStoredOverrides, storeOverrides, type StoredOverride } from './overrideTensor.ts'
import { contentHash, type LayerHooks, type VariantEdits } from './variantEdits.ts'
import { contentHashOfFolderName } from '../identity/keys.ts'

const EDITS_FILE = 'edits.json'
const OVERRIDES_FILE = 'overrides.safetensors'
/** overrides.safetensors, then the linked spill files overrides-0.safetensors, overrides-1... */
const OVERRIDES_PATTERN = /^overrides(-\d+)?\.safetensors$/

interface EditsJson {
  modelDir: string
  layers: Record<string, Omit<LayerHooks, 'novices'> & { novices?: Record<string, number[]> }>
  /**
   * Every overrides file the folder must hold: its tensors, size and mtime when written. A folder
   * missing a file, or holding one of another size or whose values no longer match their digests
   * (checked when the mtime moved), is damaged and rebuilt: without this list a lost file would
   * silently score the unedited weights. Absent in folders written before 2026-11-30 (rebuilt once).
   */
  overrides?: Record<string, OverridesFileFacts>
}
interface OverridesFileFacts { tensors: string[]; size: number; mtimeMs: number }

/** Writes the folder `tmp` (a private staging name: publishVariantFolder renames it into place). */
function writeVariantFiles(tmp: string, modelDir: string, edits: VariantEdits, dtypeOf: (name: string) => DType): void {
  fs.mkdirSync(tmp, { recursive: true })
  const json: EditsJson = { modelDir, layers: {}, overrides: {} }
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
  for (const name of fs.readdirSync(tmp).filter(f => OVERRIDES_PATTERN.test(f))) {
    const file = path.join(tmp, name)
    const st = fs.statSync(file)
    json.overrides![name] = { tensors: Object.keys(readStoredOverrides(file)).sort(), size: st.size, mtimeMs: st.mtimeMs }
  }
  // Written last: its presence marks a complete folder (isVariantFolder).
  fs.writeFileSync(path.join(tmp, EDITS_FILE), JSON.stringify(json))
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
  const edits: VariantEdits = { layers, overrides: overrideTensors(dir, json) }
  // A folder named by its content hash must still hold those edits: an edited edits.json (a hook
  // dropped, an overrides entry removed with its file) would otherwise score another model silently.
  const expected = contentHashOfFolderName(path.basename(dir))
  if (expected !== undefined) {
    const actual = contentHash(edits)
    if (actual !== expected) damaged(path.join(dir, EDITS_FILE), dir, `its edits hash to ${actual}, not to the ${expected} the folder was written for`)
  }
  return { modelDir: json.modelDir, edits }
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

/**
 * The folder's replaced tensors, from the overrides files its edits file lists: each must exist with
 * the size and mtime it was written with, and hold exactly its listed tensors (headers checked against
 * the file sizes). Values are not re-read (gigabytes at real size); a rewrite changes the mtime.
 */
function overrideTensors(dir: string, json: EditsJson): Record<string, StoredOverride> {
  const editsFile = path.join(dir, EDITS_FILE)
  if (!json.overrides || typeof json.overrides !== 'object') return damaged(editsFile, dir, 'written by an older harness: it does not list its overrides files')
  const out: Record<string, StoredOverride> = {}
  for (const [name, facts] of Object.entries(json.overrides).sort(([a], [b]) => a.localeCompare(b))) {
    if (!OVERRIDES_PATTERN.test(name) || !facts || !Array.isArray(facts.tensors)) damaged(editsFile, dir, `its overrides entry "${name}" is not an overrides file's facts`)
    const file = path.join(dir, name)
    let tensors: Record<string, StoredOverride>
    try {
      const st = fs.statSync(file)
      if (st.size !== facts.size) return damaged(file, dir, `it has ${st.size} bytes, but ${facts.size} were written`)
      tensors = readStoredOverrides(file)
      // A new mtime alone (a copied home: cp without -p) costs one read of the values against their
      // recorded digests, not a rebuild; a rewrite with other values fails it.
      if (st.mtimeMs !== facts.mtimeMs) {
        for (const [tensor, t] of Object.entries(tensors)) {
          if (!t.digest || overrideDigest({ ...t, digest: undefined }) !== t.digest) return damaged(file, dir, `the values of '${tensor}' changed after the variant was written`)
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return damaged(file, dir, 'it is missing')
      if (isHarnessError(e) && e.code === 'VARIANT_INVALID') throw e
      return damaged(file, dir, (e as Error).message)
    }
    if (JSON.stringify(Object.keys(tensors).sort()) !== JSON.stringify([...facts.tensors].sort())) damaged(file, dir, `it does not hold the tensors listed in ${EDITS_FILE}`)
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
    readVariantFiles(dir)
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
  const parent = path.dirname(dir)
  // Already there as it should be: nothing to write (a read-only home still serves it).
  if (isVariantFolder(dir) && variantFolderState(dir, () => {}) === 'valid' && readEditsJson(dir).modelDir === modelDir) return
  withFileErrors(parent, 'write the prepared variant folder (it lives under the harness home: set MOE_HARNESS_HOME to a writable folder)', () => {
    fs.mkdirSync(parent, { recursive: true })
    fs.accessSync(parent, fs.constants.W_OK)
    removeStaleStaging(parent)
    removeDeadSpills(parent)
    publish(dir, staged => writeVariantFiles(staged, modelDir, edits, dtypeOf), modelDir, warn)
  })
}

const HOST = os.hostname()

function publish(dir: string, write: (staged: string) => void, modelDir: string, warn: (message: string) => void): void {
  const privateName = (what: string) => `${dir}.${what}-${HOST}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  const state = variantFolderState(dir, warn)
  const published = state !== 'missing'
  if (state === 'valid' && readEditsJson(dir).modelDir === modelDir) return
  const staged = privateName('staged')
  try {
    write(staged)
  } catch (e) {
    fs.rmSync(staged, { recursive: true, force: true })
    throw e
  }
  if (published) {
    const aside = privateName('old')
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

/** <variant>.staged-/.old-<host>-<pid>-<hex> (older harnesses: no host, maybe a .tmp-<pid> suffix). */
const STAGING = /\.(?:staged|old)-(?:(.+)-)?(\d+)-[0-9a-f]{6}(?:\.tmp-\d+)?$/
/** A staging folder of another host is removed once this old (its writer cannot be asked whether it still runs). */
const STALE_FOREIGN_MS = 24 * 3600_000

/** Staging folders left by a killed publish: of this host when their process is gone, of others after a day. */
function removeStaleStaging(parent: string): void {
  const now = Date.now()
  for (const name of fs.readdirSync(parent)) {
    try {
      if (stagingFolderState(parent, name, now) === 'stale') fs.rmSync(path.join(parent, name), { recursive: true, force: true })
    } catch { /* gone already, or not ours to remove: a later publish retries */ }
  }
}

/**
 * What `name` under `parent` is as a publish's staging / set-aside folder: 'stale' (left by a killed
 * publish: its process on this host is gone, or another host's folder is over a day old), 'live', or
 * undefined when it is no staging name. Shared by removeStaleStaging and `moe-harness cache`.
 */
export function stagingFolderState(parent: string, name: string, now = Date.now()): 'stale' | 'live' | undefined {
  const m = STAGING.exec(name)
  if (!m) return undefined
  const ours = m[1] === undefined || m[1] === HOST
  return (ours ? !processAlive(Number(m[2])) : now - fs.statSync(path.join(parent, name)).mtimeMs > STALE_FOREIGN_MS) ? 'stale' : 'live'
}

/**
 * Removes a prepared variant folder so that no reader ever sees part of it: renamed to a private
 * set-aside name first (one removeStaleStaging clears if this process dies midway), then deleted. A
 * sweep that looks for it afterwards finds it missing and rebuilds it. False when it was already gone.
 * (`moe-harness cache prune`.)
 */
export function removeVariantFolder(dir: string): boolean {
  const aside = `${dir}.old-${HOST}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  try {
    fs.renameSync(dir, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  }
  fs.rmSync(aside, { recursive: true, force: true })
  return true
}
