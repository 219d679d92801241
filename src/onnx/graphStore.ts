// Built scoring graphs on disk (issue 10 §2-§4), keyed by identity/keys.ts graphKey:
//   <root>/graphs/<key>/graph.onnx     the ModelProto: structure plus external-data references
//   <root>/graphs/<key>/derived.bin    tensors the harness computed (overrides, dequantized FP8), if any
//   <root>/graphs/<key>/manifest.json  what the entry is (key inputs, outputs, files), written last
// Checkpoint weights are never copied here: graph.onnx points into the safetensors files and
// onnxruntime maps them. A second build of the same (checkpoint, edits, options) reads graph.onnx
// instead of rebuilding, and a second variant of a model writes only the tensors its edits changed.
// Entries are built in a private temp folder and renamed into place, so concurrent workers and
// processes never see half an entry; the least recently used ones beyond the cap are removed.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fail, isHarnessError } from '../errors.ts'
import { editsContentHash, graphKey, GRAPH_FORMAT_VERSION } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { overrideIdentity } from '../edits/overrideTensor.ts'
import { parseNonNegative } from '../util/envNumber.ts'
import { markUsed } from '../util/lastUse.ts'
import { formatBytes } from '../util/bytes.ts'
import { unwritableReason } from '../util/unwritableFolder.ts'
import { maxAbsFinite, writeAll } from '../model/safetensors.ts'
import { buildScoringGraph, type BuiltGraph, type GraphOptions } from './moeGraph.ts'
import { FLOAT16_MAX } from './precision.ts'

const MANIFEST = 'manifest.json'
const GRAPH = 'graph.onnx'
const DERIVED = 'derived.bin'
const MARK = 'moe-harness graph cache'
/** Entries kept beyond which the least recently used go (a built graph is MBs; derived.bin can be GBs). */
const MAX_ENTRIES = 48
/**
 * Bytes kept (derived.bin dominates) beyond which the least recently used go: $MOE_HARNESS_GRAPH_CACHE_GB,
 * default 20, in gigabytes of 10^9 bytes: the unit every size the harness prints is in (src/util/bytes.ts).
 */
export function graphCacheLimitBytes(): number {
  const given = process.env.MOE_HARNESS_GRAPH_CACHE_GB
  if (given === undefined || given === '') return 20e9
  const gb = parseNonNegative(given)
  if (gb === undefined || !Number.isFinite(gb)) fail('CONFIG_INVALID', `MOE_HARNESS_GRAPH_CACHE_GB must be a number of gigabytes >= 0, got '${given}'; unset it for the default (20).`)
  return gb * 1e9
}
/**
 * An entry used this recently is not evicted: another worker may have read its graph.onnx and be about
 * to open its derived.bin (once onnxruntime has mapped it, removal is harmless).
 */
export const RECENT_MS = 60_000
/** A temp build folder this old belongs to a build that died. */
export const STALE_BUILD_MS = 60 * 60_000
/**
 * Names an entry is renamed to just before it is deleted (eviction here, `cache prune` in
 * src/cache/prune.ts): nothing reads such a folder again, so one left by a killed remover is a
 * leftover at once, not after STALE_BUILD_MS as a build's is.
 */
export const REMOVAL_ASIDE = { evicted: '.building-evicted-', pruned: '.building-pruned-' } as const
export const isRemovalAside = (name: string) => Object.values(REMOVAL_ASIDE).some(prefix => name.startsWith(prefix))

export interface StoredGraph extends BuiltGraph {
  /** The folder external-data locations are relative to ('/': locations are absolute paths without the leading slash). */
  externalFolder: string
  /** The entry's folder. */
  dir: string
  fromCache: boolean
  /** `dir` is a private temp folder (no writable cache): remove it once the session exists (releaseTemporary). */
  temporary?: boolean
}

/** Removes a graph's temp folder once onnxruntime has mapped or read its files (no-op for cached graphs). */
export function releaseTemporary(graph: StoredGraph): void {
  if (!graph.temporary) return
  removeQuietly(graph.dir)
  temporaries.delete(graph.dir)
}

interface Manifest {
  mark: typeof MARK
  format: number
  key: string
  outputNames: string[]
  createdAt: string
  derivedBytes: number
  /**
   * derived.bin's size, mtime, ctime and inode when stored: a file rewritten since (even at the same
   * size) no longer matches and the entry is rebuilt, without hashing gigabytes on every open.
   */
  derivedIdentity?: FileIdentity
  /** sha256 of graph.onnx (small): a damaged graph is rebuilt rather than failing every session. */
  graphSha256: string
}

/** The checkpoint as the graph sees it: its folder, its weight files' identity, config and own hooks. */
function checkpointIdentity(ckpt: Checkpoint): unknown {
  const files = [...new Set([...ckpt.tensors.values()].flatMap(t => (t.fp8 ? [t.file, t.fp8.scale.file] : [t.file])))].sort()
  return {
    dir: path.resolve(ckpt.dir),
    files: files.map(f => {
      const st = fs.statSync(f)
      // ctime too: `touch -r` or `cp -p` can put the mtime back after an in-place rewrite, not the ctime.
      return { file: path.resolve(f), size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino }
    }),
    config: ckpt.config,
    baseEdits: ckpt.baseEdits ? editsContentHash(ckpt.baseEdits, overrideIdentity) : null,
  }
}

/**
 * The scoring graph of (ckpt, edits, options) with its weights mapped from their files: from the cache
 * under `root`/graphs when an entry exists, else built (buildScoringGraph with weightFiles) and stored.
 * A cache that cannot be written or runs out of space falls back to a temporary folder (one warning).
 * Errors: whatever the build throws (the temp folder is removed); FILE_ACCESS when the temporary
 * folder is full too; other file-system errors as thrown.
 */
export function storedScoringGraph(ckpt: Checkpoint, edits: VariantEdits, options: Omit<GraphOptions, 'weightFiles'>, root: string | undefined): StoredGraph {
  if (root === undefined) return unstoredGraph(ckpt, edits, options)
  const graphs = path.join(root, 'graphs')
  // Stored overrides enter by file identity, not content: a lookup never reads them back.
  const key = graphKey({ checkpoint: checkpointIdentity(ckpt), editsHash: editsContentHash(edits, overrideIdentity), options, allowNonfinite: ckpt.allowNonfinite })
  const dir = path.join(graphs, key)
  const hit = readEntry(dir, key)
  if (hit) return hit
  const checked = verifiedFinite(ckpt, graphs)
  // A cache that cannot be written (read-only home, a file in the way) only costs the reuse.
  const unwritable = folderUnwritable(graphs)
  if (unwritable) {
    if (!warnedUnwritable.has(graphs)) process.stderr.write(`warning: the graph cache ${graphs} cannot be written: ${unwritable}; graphs are rebuilt for every session (set MOE_HARNESS_HOME to a writable folder to keep them).\n`)
    warnedUnwritable.add(graphs)
    return unstoredGraph(checked, edits, options)
  }
  const tmp = path.join(graphs, `.building-${key}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
  const derived = derivedWriter(() => path.join(tmp, DERIVED), () => path.join(dir, DERIVED))
  try {
    fs.mkdirSync(tmp)
    const built = buildScoringGraph(checked, edits, { ...options, weightFiles: derived.files })
    derived.close(true)
    fs.writeFileSync(path.join(tmp, GRAPH), built.model)
    const manifest: Manifest = {
      mark: MARK, format: GRAPH_FORMAT_VERSION, key, outputNames: built.outputNames, createdAt: new Date().toISOString(), derivedBytes: derived.size, graphSha256: sha256(built.model),
      ...(derived.size > 0 ? { derivedIdentity: fileIdentity(path.join(tmp, DERIVED)) } : {}),
    }
    fs.writeFileSync(path.join(tmp, MANIFEST), JSON.stringify(manifest, null, 1))
    const theirs = putInPlace(tmp, dir, key, graphs)
    if (theirs) return theirs
    evict(graphs, dir)
    return { ...built, external: new Map(), externalFolder: '/', dir, fromCache: false }
  } catch (e) {
    // The one close of a failed build (a built one closed its file above), before its folder goes.
    derived.close(false)
    removeQuietly(tmp)
    // A full cache, like an unwritable one, only costs the reuse: the run (often after a long
    // calibration) goes on with the graph in a temporary folder.
    if (!isHarnessError(e) && isDiskFull(e)) {
      if (!warnedFull.has(graphs)) process.stderr.write(`warning: the graph cache ${graphs} ran out of disk space (${(e as Error).message}); graphs are built in a temporary folder and rebuilt for every session (free space there, lower MOE_HARNESS_GRAPH_CACHE_GB (now ${formatBytes(graphCacheLimitBytes())}), or point MOE_HARNESS_HOME at a larger disk to keep them).\n`)
      warnedFull.add(graphs)
      return unstoredGraph(checked, edits, options)
    }
    throw e
  }
}

/**
 * Renames the built entry `tmp` to `dir`; returns the entry another worker or process stored there
 * first (ours is dropped), or undefined when ours is in place. A damaged entry there (ours, as its name
 * is a key) is moved aside and replaced; several builders may be replacing it at once (a copied or
 * re-owned home damages every entry with derived.bin), so each step tolerates the others' moves, and
 * a complete entry moved aside by mistake (another builder renamed it in between our check and our
 * move) is put back. The identical entry of any builder serves: the same key, the same bytes.
 */
function putInPlace(tmp: string, dir: string, key: string, graphs: string): StoredGraph | undefined {
  for (let attempt = 0; ; attempt++) {
    try {
      fs.renameSync(tmp, dir)
      return undefined
    } catch (e) {
      const theirs = readEntry(dir, key)
      if (theirs) {
        removeQuietly(tmp)
        return theirs
      }
      if (attempt === 5) throw e
    }
    const aside = path.join(graphs, `.building-damaged-${key}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
    try {
      fs.renameSync(dir, aside)
    } catch {
      continue // moved aside by another builder already
    }
    if (readEntry(aside, key, false)) {
      try {
        fs.renameSync(aside, dir)
      } catch { /* a third builder's entry is there: ours or theirs, the next attempt reads it */ }
    }
    removeQuietly(aside)
  }
}

const warnedUnwritable = new Set<string>()
const warnedFull = new Set<string>()
const isDiskFull = (e: unknown) => ['ENOSPC', 'EDQUOT'].includes((e as NodeJS.ErrnoException)?.code ?? '')
/** Temp folders of unstored graphs not yet released: removed at exit too (an interrupted build). */
const temporaries = new Set<string>()
let exitHook = false

/**
 * The mapped graph without the cache: checkpoint weights still mapped from their files; computed
 * tensors go to a private folder under the system temp folder (onnxruntime takes external data from
 * files or from memory, not both), which `temporary` marks for removal once the session exists.
 */
function unstoredGraph(ckpt: Checkpoint, edits: VariantEdits, options: Omit<GraphOptions, 'weightFiles'>): StoredGraph {
  let dir = ''
  const derived = derivedWriter(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-harness-graph-'))
    temporaries.add(dir)
    if (!exitHook) process.once('exit', () => { for (const t of temporaries) removeQuietly(t) })
    exitHook = true
    return path.join(dir, DERIVED)
  }, () => path.join(dir, DERIVED))
  try {
    const built = buildScoringGraph(ckpt, edits, { ...options, weightFiles: derived.files })
    return { ...built, external: new Map(), externalFolder: '/', dir, fromCache: false, temporary: dir !== '' }
  } catch (e) {
    if (dir) removeQuietly(dir)
    temporaries.delete(dir)
    if (!isHarnessError(e) && isDiskFull(e)) {
      fail('FILE_ACCESS', `No disk space left in the temporary folder ${os.tmpdir()} for a graph's computed weights (${(e as Error).message}); free space there, or point TMPDIR (or MOE_HARNESS_HOME, which keeps graphs) at a folder with space.`)
    }
    throw e
  } finally {
    derived.close(false)
  }
}

/** How often a build writing derived weights marks its folder alive (its mtime), well inside STALE_BUILD_MS. */
export const BUILD_ALIVE_MS = 60_000

/**
 * The derived-weights file of a graph being built: tensors appended 64-byte aligned (every tensor's
 * start aligned for any element type), the file made by `open` when the first one comes; `located`
 * is where the session will find it (a cache entry is renamed into place after the build). While it
 * writes, the file's folder gets a fresh mtime at least every BUILD_ALIVE_MS: appending to a file does
 * not change its folder's mtime, by which eviction and `cache prune` tell a dead build (older than
 * STALE_BUILD_MS) from a live one, so a build writing derived weights for over an hour (FP8 weights
 * dequantized at real size) would have been removed under itself.
 */
export function derivedWriter(open: () => string, located: () => string) {
  let fd: number | undefined
  let file = ''
  let size = 0
  let aliveAt = 0
  return {
    files: {
      base: '/',
      appendDerived(bytes: Uint8Array) {
        if (fd === undefined) fd = fs.openSync(file = open(), 'w') // `open` may make the folder: once
        const offset = Math.ceil(size / 64) * 64
        writeAll(fd, bytes, { position: offset }) // writeSync may write less, and at most 2 GiB at once
        size = offset + bytes.byteLength
        if (Date.now() - aliveAt >= BUILD_ALIVE_MS) {
          aliveAt = Date.now()
          try { fs.utimesSync(path.dirname(file), new Date(aliveAt), new Date(aliveAt)) } catch { /* the build fails on its own if the folder is gone */ }
        }
        return { location: path.relative('/', located()), offset }
      },
    },
    get size() { return size },
    /** Closes the file, flushed to disk first when `sync`. */
    close(sync: boolean) {
      if (fd === undefined) return
      if (sync) fs.fsyncSync(fd)
      fs.closeSync(fd)
      fd = undefined
    },
  }
}

/** Creates `dir` (and its parents) if needed; undefined when files can be created in it, else why not, in words. */
function folderUnwritable(dir: string): string | undefined {
  let made = false
  try {
    fs.mkdirSync(dir, { recursive: true })
    made = true
    fs.accessSync(dir, fs.constants.W_OK)
    return undefined
  } catch (e) {
    return unwritableReason(dir, e, made)
  }
}

/**
 * The checkpoint with every weight checked for NaN/Inf once per checkpoint identity, not once per
 * graph and worker: the first build reads all its tensors (Checkpoint.checkFinite, TENSOR_NONFINITE)
 * and leaves a marker under `graphs`; later builds, in any worker or process, skip the reads. A
 * checkpoint opened with allowNonfinite is returned as it is (nothing is checked). A sweep calls it up
 * front for each model (src/sweep/modelChecks.ts), so a broken model fails its cells before any calibration.
 */
export function verifiedFinite(ckpt: Checkpoint, graphs: string): Checkpoint {
  if (ckpt.allowNonfinite) return ckpt
  const marker = path.join(graphs, `.finite-${graphKey({ checkpoint: checkpointIdentity(ckpt), editsHash: '', options: 'finite', allowNonfinite: false })}`)
  if (fs.existsSync(marker)) markUsed(marker) // `cache prune --older-than` must not take a marker in daily use for a stale one
  else {
    for (const name of ckpt.tensors.keys()) ckpt.checkFinite(name)
    try {
      // Its presence is the answer, written only once the check passed; a full disk only costs the reuse.
      if (!folderUnwritable(graphs)) fs.writeFileSync(marker, `${MARK}: every weight of ${path.resolve(ckpt.dir)} was checked for NaN/Inf on ${new Date().toISOString()}\n`)
    } catch { /* checked again next time */ }
  }
  return { ...ckpt, checkFinite: () => {} }
}

/** A weight a float16 graph cannot hold, and its largest finite magnitude. */
export interface Float16Overflow { name: string; maxAbs: number }

/**
 * The checkpoint's weights whose largest finite |w| exceeds float16's 65504: a float16 graph would turn
 * them into Inf (on a GPU; onnxruntime's CPU provider computes float16 nodes in float32 and would
 * hide it). Every weight is read once per checkpoint and the answer kept in a marker under
 * `root`/graphs, as verifiedFinite does; without a writable cache it is read again. Edited tensors
 * (variant overrides) are not checked: methods average or zero weights, which stays in range.
 */
export function float16Overflows(ckpt: Checkpoint, root: string | undefined): Float16Overflow[] {
  const graphs = root === undefined ? undefined : path.join(root, 'graphs')
  const marker = graphs && path.join(graphs, `.float16-range-${graphKey({ checkpoint: checkpointIdentity(ckpt), editsHash: '', options: 'float16-range', allowNonfinite: ckpt.allowNonfinite })}`)
  if (marker) {
    try {
      const kept = JSON.parse(fs.readFileSync(marker, 'utf8')) as { mark?: string; overflows?: Float16Overflow[] }
      if (kept.mark === MARK && Array.isArray(kept.overflows)) {
        markUsed(marker)
        return kept.overflows
      }
    } catch { /* absent or damaged: read the weights again */ }
  }
  const overflows: Float16Overflow[] = []
  for (const [name, entry] of ckpt.tensors) {
    if (entry.dtype === 'F16') continue // stored in float16: in range by construction
    const maxAbs = maxAbsFinite(ckpt.readRaw(name), entry.dtype)
    if (maxAbs > FLOAT16_MAX) overflows.push({ name, maxAbs })
  }
  if (marker && !folderUnwritable(graphs!)) {
    const tmp = `${marker}.${process.pid}-${crypto.randomBytes(4).toString('hex')}`
    try {
      fs.writeFileSync(tmp, JSON.stringify({ mark: MARK, checkpoint: path.resolve(ckpt.dir), overflows }))
      fs.renameSync(tmp, marker) // whole or absent for a concurrent reader
    } catch {
      fs.rmSync(tmp, { force: true }) // a full disk only costs the reuse
    }
  }
  return overflows
}

/** The complete entry in `dir`, or undefined; `touch` moves it up in the least-recently-used order. */
function readEntry(dir: string, key: string, touch = true): StoredGraph | undefined {
  let manifest: Manifest
  let model: Uint8Array
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest
    if (manifest.mark !== MARK || manifest.key !== key || manifest.format !== GRAPH_FORMAT_VERSION) return undefined
    if (manifest.derivedBytes > 0 && JSON.stringify(fileIdentity(path.join(dir, DERIVED))) !== JSON.stringify(manifest.derivedIdentity)) return undefined
    model = fs.readFileSync(path.join(dir, GRAPH))
    if (sha256(model) !== manifest.graphSha256) return undefined
  } catch {
    return undefined // absent or damaged: rebuilt (the rename then fails and putInPlace replaces it)
  }
  const now = new Date()
  try {
    if (touch) fs.utimesSync(path.join(dir, MANIFEST), now, now) // least recently used order
  } catch { /* read-only cache: still usable */ }
  return { model, external: new Map(), outputNames: manifest.outputNames, externalFolder: '/', dir, fromCache: true }
}

/**
 * When the entry `dir` was last used (its manifest's mtime: the LRU clock, ms since the epoch), or
 * undefined when `dir` holds no manifest of ours (not ours, or incomplete: never touched). For `moe-harness cache`.
 */
export function graphEntryLastUsed(dir: string): number | undefined {
  try {
    const manifestFile = path.join(dir, MANIFEST)
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest
    return manifest?.mark === MARK ? fs.statSync(manifestFile).mtimeMs : undefined
  } catch {
    return undefined
  }
}

/** Removes entries beyond MAX_ENTRIES / graphCacheLimitBytes(), least recently used first, and dead temp builds; never `keep`, never a recent one. */
function evict(graphs: string, keep: string): void {
  const now = Date.now()
  const entries: { dir: string; used: number; bytes: number }[] = []
  for (const name of fs.readdirSync(graphs)) {
    const dir = path.join(graphs, name)
    try {
      if (name.startsWith('.building-')) {
        if (isRemovalAside(name) || now - fs.statSync(dir).mtimeMs > STALE_BUILD_MS) removeQuietly(dir)
        continue
      }
      const manifestFile = path.join(dir, MANIFEST)
      const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest
      if (manifest.mark !== MARK) continue // not ours: never touched
      const bytes = fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0)
      entries.push({ dir, used: fs.statSync(manifestFile).mtimeMs, bytes })
    } catch {
      continue
    }
  }
  entries.sort((a, b) => b.used - a.used)
  let count = 0
  let bytes = 0
  for (const e of entries) {
    count++
    bytes += e.bytes
    if (e.dir === keep || now - e.used < RECENT_MS) continue
    if (count > MAX_ENTRIES || bytes > graphCacheLimitBytes()) removeEntry(graphs, e.dir)
  }
}

/**
 * Removes an entry renamed aside first (a temp build's name): a process killed midway leaves a
 * dead temp build, which the next eviction or `cache prune` clears, never a <key> folder without its
 * manifest (taken for a stranger's folder, kept for good).
 */
function removeEntry(graphs: string, dir: string): void {
  const aside = path.join(graphs, `${REMOVAL_ASIDE.evicted}${path.basename(dir)}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
  try {
    fs.renameSync(dir, aside)
  } catch {
    return // gone already (another process evicted it)
  }
  removeQuietly(aside)
}

interface FileIdentity { size: number; mtimeMs: number; ctimeMs: number; ino: number }
function fileIdentity(file: string): FileIdentity {
  const st = fs.statSync(file)
  return { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino }
}

const sha256 = (bytes: Uint8Array) => crypto.createHash('sha256').update(bytes).digest('hex')

function removeQuietly(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true })
  } catch { /* best effort: a later eviction retries */ }
}
