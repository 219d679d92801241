// The one rule for everything the harness writes where a user points it (report sites, transformed
// models, CSV/JSON exports, merged stores, scaffolded methods): it only replaces what it created.
//
// - Output folders get a marker file (MARKER_FILE) saying which command wrote them; an existing
//   folder is replaced only when it carries our marker for the same kind of output (or is empty).
//   A folder that is, or contains, a results database, the current folder, the project, a model in
//   play, the home folder or `/` is refused, and so is any path inside a model folder or inside
//   another harness output folder (a folder with our marker).
// - New output is built in a hidden sibling temp folder/file and swapped in by rename; the old one
//   is moved aside first and removed only once the new one is in place, so a failure at any point
//   leaves the previous output untouched and no temp behind. Temps left by a killed process (its pid
//   is gone) are cleaned up by the next write to the same path.
// Every refusal is a HarnessError OUTPUT_UNSAFE naming the path, the reason and the fix; write
// failures (permissions, disk full) are OUTPUT_FAILED.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fail, HarnessError, isHarnessError } from '../errors.ts'
import { MODELS_DIR, ROOT } from '../paths.ts'
import { processAlive } from './processAlive.ts'
import { HARNESS_VERSION } from '../version.ts'

/** Written into every output folder; its presence is what makes a folder "ours" to replace. */
export const MARKER_FILE = '.moe-harness-output.json'

export type OutputKind = 'report' | 'transform'

/** Where a path came from and what it must stay clear of. */
export interface OutputContext {
  /** How the user named the path, for messages: a flag ('--out', '--csv') or a config field ('report.outDir in /x/harness.config.ts'). */
  source: string
  /** Results databases this command reads or writes. */
  databases?: readonly string[]
  /** Model folders in play (--model, the config's models, the models a store refers to). */
  models?: readonly string[]
}

/** How a kind of output file is recognised as ours. */
export interface FileRule {
  /** The kind of file in messages: 'CSV export'. */
  what: string
  /** A file name to suggest when a folder was given: 'results.csv'. */
  example: string
  /** Whether an existing file is this kind of harness output (only then it may be replaced). */
  isOurs: (file: string) => boolean
}

/** What the marker records: the writer, the kind of output and every file it wrote (relative, sorted). */
interface Marker { writer: 'moe-harness'; kind: OutputKind; version: string; files: string[] }

const TEMP_TAG = '.moe-harness-tmp-'
const OLD_TAG = '.moe-harness-old-'

// ------------------------------------------------------------------------------------------ folders

/**
 * Checks that `target` may be (re)written as a `kind` output folder without losing anything the
 * harness did not create; returns its absolute path. Run it before any long work so that a bad
 * path fails in a second, not after a sweep. Throws OUTPUT_UNSAFE.
 */
export function checkOutputDir(target: string, kind: OutputKind, ctx: OutputContext): string {
  return mapFsErrors(named(ctx, target), () => checkDir(target, kind, ctx))
}

function checkDir(target: string, kind: OutputKind, ctx: OutputContext): string {
  refuseBlank(target, ctx, `a new folder for the ${kind} output`)
  const abs = realTarget(target)
  const shown = named(ctx, target)
  const st = lstat(abs)
  if (st?.isSymbolicLink()) refuse(`${shown} is a symbolic link`, `pass the folder it points to, or a new folder`)
  if (st && !st.isDirectory()) refuse(`${shown} is an existing ${st.isFile() ? 'file' : 'non-folder'}, not a folder`, `choose a new folder for the ${kind} output`)
  checkProtected(abs, shown, ctx)
  if (st) {
    const entries = fs.readdirSync(abs)
    if (entries.length) {
      const marker = readMarker(abs)
      if (!marker && !legacyOutput(abs, kind, entries)) {
        refuse(`${shown} is a non-empty folder the harness did not create (no ${MARKER_FILE} in it); replacing it would delete its ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`,
          `choose a new or empty folder (e.g. ${path.join(target, kind === 'report' ? 'site' : 'model')})`)
      }
      if (marker && marker.kind !== kind) {
        refuse(`${shown} holds a ${marker.kind} output of moe-harness, not a ${kind} output`, `choose another folder, or remove ${target} yourself if you no longer need it`)
      }
      // Files added to one of our folders afterwards (a database, notes) are not ours to delete.
      const extra = marker ? listFiles(abs).filter(f => f !== MARKER_FILE && !marker.files.includes(f)) : []
      if (extra.length) {
        refuse(`${shown} holds files moe-harness did not write (${extra.slice(0, 5).join(', ')}${extra.length > 5 ? `, … ${extra.length - 5} more` : ''}); replacing the folder would delete them`,
          `move them out of ${target}, or choose another folder`)
      }
    }
  }
  return abs
}

/**
 * Writes a `kind` output folder atomically: checks `target` (checkOutputDir), lets `build` fill a
 * fresh hidden sibling folder, adds the marker, then swaps it in by rename. On any failure the temp
 * folder is removed and whatever was at `target` is untouched.
 */
export function writeOutputDir(target: string, kind: OutputKind, ctx: OutputContext, build: (dir: string) => void): void {
  const abs = checkOutputDir(target, kind, ctx)
  const parent = path.dirname(abs)
  const created = mkdirs(parent, named(ctx, target))
  cleanStale(abs)
  const tmp = sibling(abs, TEMP_TAG)
  try {
    fs.mkdirSync(tmp)
    // Marked from the start, so a temp left by a killed process is recognisably ours.
    writeMarker(tmp, kind, [])
    build(tmp)
    writeMarker(tmp, kind, listFiles(tmp).filter(f => f !== MARKER_FILE))
    swapIn(tmp, abs)
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true })
    if (created) fs.rmSync(created, { recursive: true, force: true })
    throw writeError(e, named(ctx, target), tmp, abs)
  }
}

// -------------------------------------------------------------------------------------------- files

/**
 * Writes an output file atomically: a temp file in the same folder, renamed over `target`. An
 * existing file is replaced only when `isOurs(file)` recognises it as this kind of output (our CSV
 * header, our JSON shape, a harness database); `what` names the kind in messages ('CSV export').
 * Throws OUTPUT_UNSAFE (refused, nothing written) or OUTPUT_FAILED (write error, nothing changed).
 */
export function writeOutputFile(target: string, ctx: OutputContext, rule: FileRule, write: (tmp: string) => void): void {
  const abs = checkOutputFile(target, ctx, rule)
  const created = mkdirs(path.dirname(abs), named(ctx, target))
  cleanStale(abs)
  const tmp = sibling(abs, TEMP_TAG)
  try {
    write(tmp)
    fs.renameSync(tmp, abs)
  } catch (e) {
    removeFileAndSidecars(tmp)
    if (created) fs.rmSync(created, { recursive: true, force: true })
    throw writeError(e, named(ctx, target), tmp, abs)
  }
}

/** The checks of writeOutputFile alone (run them for every output before any work); returns the absolute path. */
export function checkOutputFile(target: string, ctx: OutputContext, rule: FileRule): string {
  return mapFsErrors(named(ctx, target), () => checkFile(target, ctx, rule))
}

function checkFile(target: string, ctx: OutputContext, rule: FileRule): string {
  refuseBlank(target, ctx, `a file path (e.g. ${rule.example})`)
  const abs = realTarget(target)
  const shown = named(ctx, target)
  const st = lstat(abs)
  if (st?.isSymbolicLink()) refuse(`${shown} is a symbolic link`, 'pass the file it points to, or a new file name')
  if (st?.isDirectory()) {
    const model = enclosingModel(abs, ctx.models ?? [])
    refuse(`${shown} is a folder${model ? ` (the model folder ${model} or inside it)` : ''}, not a file`, `pass a file path (e.g. ${model ? rule.example : path.join(target, rule.example)})`)
  }
  if (st && !st.isFile()) refuse(`${shown} is not a regular file`, 'pass a new file name')
  for (const db of ctx.databases ?? []) {
    if (samePath(abs, realPath(db))) refuse(`${shown} is the results database ${db} this command reads`, 'write the output to another file')
  }
  const model = enclosingModel(path.dirname(abs), ctx.models ?? [])
  if (model) refuse(`${shown} is inside the model folder ${model}`, 'write outputs outside model folders')
  refuseInsideOutput(abs, shown)
  if (st && !rule.isOurs(abs)) {
    refuse(`${shown} already exists and is not a ${rule.what} of moe-harness; replacing it would lose its contents`, 'choose a new file name, or move the file away first')
  }
  return abs
}

/**
 * Creates new files that must never overwrite anything (scaffolds): each is written to a temp file
 * and hard-linked into place, which fails if the name exists even when created concurrently. If
 * any fails, the ones created by this call are removed. Throws OUTPUT_UNSAFE naming the existing file.
 */
export function createNewFiles(files: readonly { file: string; content: string; shown: string }[]): void {
  for (const f of files) {
    if (lstat(path.resolve(f.file))) refuse(`${f.shown} already exists`, 'choose another name; moe-harness never overwrites an existing file here')
  }
  const done: string[] = []
  try {
    for (const f of files) {
      const abs = path.resolve(f.file)
      const created = mkdirs(path.dirname(abs), f.shown)
      if (created) done.push(created)
      const tmp = sibling(abs, TEMP_TAG)
      try {
        fs.writeFileSync(tmp, f.content, { flag: 'wx' })
        try {
          fs.linkSync(tmp, abs)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') refuse(`${f.shown} already exists`, 'choose another name; moe-harness never overwrites an existing file here')
          throw e
        }
        done.push(abs)
      } finally {
        fs.rmSync(tmp, { force: true })
      }
    }
  } catch (e) {
    for (const p of done.reverse()) fs.rmSync(p, { recursive: true, force: true })
    throw writeError(e, files.map(f => f.shown).join(' and '))
  }
}

// ------------------------------------------------------------------------------------------ helpers

/** '--out DIR', or 'report.outDir in FILE (DIR)' for paths from a config. */
function named(ctx: OutputContext, target: string): string {
  return ctx.source.startsWith('-') ? `${ctx.source} ${target}` : `${ctx.source} (${target})`
}

/**
 * An empty or blank path (`--out "$OUT"` with OUT unset): it resolved to the current folder (refused as
 * such, a confusing reason) or, for a file, to a file named ' ' in it.
 */
function refuseBlank(target: string, ctx: OutputContext, what: string): void {
  if (!target.trim()) refuse(`${ctx.source} is ${target ? 'blank' : 'empty'}`, `pass ${what}`)
}

function refuse(problem: string, fix: string): never {
  fail('OUTPUT_UNSAFE', `${problem}. Nothing was written; ${fix}.`)
}

/** File-system errors while checking a path (permission denied on a folder) become OUTPUT_FAILED naming it. */
function mapFsErrors<T>(shown: string, check: () => T): T {
  try {
    return check()
  } catch (e) {
    throw writeError(e, shown)
  }
}

function writeError(e: unknown, shown: string, tmp?: string, abs?: string): unknown {
  // An error raised while writing the temp names the temp, which is gone by now: name the target.
  if (isHarnessError(e)) return tmp && abs && e.message.includes(tmp) ? new HarnessError(e.code, e.message.replaceAll(tmp, abs), { cause: e }) : e
  const err = e as NodeJS.ErrnoException
  const hint = err.code === 'EACCES' || err.code === 'EPERM' ? 'check the folder permissions or choose a writable location'
    : err.code === 'ENOSPC' || err.code === 'EFBIG' ? 'free disk space (or raise the file-size limit, ulimit -f) or choose another disk'
    : err.code === 'ENOTDIR' ? 'a parent of the path is a file; choose another location'
    : 'fix the cause and rerun'
  return new HarnessError('OUTPUT_FAILED', `Could not write ${shown}: ${err.message ?? String(e)}. The previous output (if any) is unchanged; ${hint}.`, { cause: e })
}

function lstat(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') refuse(`a parent of ${p} is a file`, 'choose a path whose parent folders are folders')
    throw e
  }
}

/** The absolute path with the symlinks of its existing ancestors resolved; the last component is not followed. */
function realTarget(p: string): string {
  const abs = path.resolve(p)
  const parent = path.dirname(abs)
  return parent === abs ? abs : path.join(realPath(parent), path.basename(abs))
}

/** The absolute path with every symlink resolved, as far as the path exists. */
function realPath(p: string): string {
  const abs = path.resolve(p)
  const rest: string[] = []
  for (let dir = abs; ; ) {
    try {
      return path.join(fs.realpathSync(dir), ...rest.reverse())
    } catch {
      const up = path.dirname(dir)
      if (up === dir) return abs
      rest.push(path.basename(dir))
      dir = up
    }
  }
}

function samePath(a: string, b: string): boolean {
  return path.relative(a, b) === ''
}

/** True when `child` is `parent` or inside it. */
function within(child: string, parent: string): boolean {
  const rel = path.relative(parent, child)
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel))
}

/** Refuses a folder target that is or contains something the harness must never delete. */
function checkProtected(abs: string, shown: string, ctx: OutputContext): void {
  const protectedPaths: { p: string; what: string }[] = [
    ...(ctx.databases ?? []).map(db => ({ p: realPath(db), what: `the results database ${db}` })),
    { p: realPath(process.cwd()), what: 'the current folder' },
    { p: realPath(ROOT), what: 'the moe-harness project' },
    { p: realPath(MODELS_DIR), what: 'the built-in models folder' },
    ...(ctx.models ?? []).map(m => ({ p: realPath(m), what: `the model folder ${m}` })),
    { p: realPath(os.homedir()), what: 'your home folder' },
    { p: path.parse(abs).root, what: 'the file-system root' },
  ]
  for (const { p, what } of protectedPaths) if (samePath(abs, p)) refuse(`${shown} is ${what}`, 'choose a new folder for the output')
  for (const { p, what } of protectedPaths) {
    if (within(p, abs)) refuse(`${shown} contains ${what}; replacing it would delete it`, 'choose a new folder for the output')
  }
  const model = enclosingModel(path.dirname(abs), ctx.models ?? [])
  if (model) refuse(`${shown} is inside the model folder ${model}`, 'write outputs outside model folders')
  refuseInsideOutput(abs, shown)
}

/**
 * Refuses a path inside another harness output folder (one carrying our marker): the next rewrite
 * of that folder would find a file it did not write and refuse forever ("holds files moe-harness
 * did not write"), or, had it not, delete the nested output.
 */
function refuseInsideOutput(abs: string, shown: string): void {
  for (let d = path.dirname(abs); ; d = path.dirname(d)) {
    const marker = readMarker(d)
    if (marker) refuse(`${shown} is inside ${d}, a ${marker.kind} output folder of moe-harness; that folder is replaced as a whole when it is rewritten`, `write the output outside it (e.g. beside it: ${path.join(path.dirname(d), path.basename(abs))})`)
    if (path.dirname(d) === d) return
  }
}

/** The model folder (in play, or any HF checkpoint folder) that is `dir` or an ancestor of it. */
function enclosingModel(dir: string, models: readonly string[]): string | undefined {
  const inPlay = models.map(m => ({ shown: m, p: realPath(m) }))
  for (const m of inPlay) if (within(dir, m.p)) return m.shown
  for (let d = dir; ; d = path.dirname(d)) {
    if (looksLikeModel(d)) return d
    if (path.dirname(d) === d) return undefined
  }
}

function looksLikeModel(dir: string): boolean {
  try {
    if (!fs.statSync(path.join(dir, 'config.json')).isFile()) return false
    return fs.readdirSync(dir).some(f => f.endsWith('.safetensors') || f === 'model.safetensors.index.json')
  } catch {
    return false
  }
}

function readMarker(dir: string): Marker | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, MARKER_FILE), 'utf8')) as Marker
    return m?.writer === 'moe-harness' && (m.kind === 'report' || m.kind === 'transform') && Array.isArray(m.files) ? m : undefined
  } catch {
    return undefined
  }
}

// Deterministic (no time stamp): the same database renders a byte-identical site; the file's mtime says when.
function writeMarker(dir: string, kind: OutputKind, files: string[]): void {
  const marker: Marker = { writer: 'moe-harness', kind, version: HARNESS_VERSION, files }
  fs.writeFileSync(path.join(dir, MARKER_FILE), JSON.stringify(marker, null, 1) + '\n')
}

/**
 * Outputs written before the marker existed, recognised by their own files: a site is only pages and
 * leaderboard.json; a transformed model carries moe_harness_provenance.json or moe_harness_variant.json.
 */
function legacyOutput(dir: string, kind: OutputKind, entries: string[]): boolean {
  if (kind === 'report') return entries.includes('leaderboard.json') && entries.every(f => f === 'leaderboard.json' || f === MARKER_FILE || (f.endsWith('.html') && fs.statSync(path.join(dir, f)).isFile()))
  return entries.includes('moe_harness_provenance.json') || entries.includes('moe_harness_variant.json')
}

/** Every file and folder under `dir`, as sorted relative paths with '/' separators. */
function listFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map(f => f.split(path.sep).join('/')).sort()
}

/** mkdir -p that returns the first folder it created (to remove on failure), or undefined. */
function mkdirs(dir: string, shown: string): string | undefined {
  try {
    return fs.mkdirSync(dir, { recursive: true })
  } catch (e) {
    throw writeError(e, shown)
  }
}

// Temps carry the host (folders may be shared between machines) and pid of their writer, so only
// those of dead local processes are ever cleaned up.
const HOST = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 6)

function sibling(abs: string, tag: string): string {
  return path.join(path.dirname(abs), `.${path.basename(abs)}${tag}${HOST}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
}

/** Renames `tmp` to `abs`, keeping the old `abs` aside until the new one is in place. */
function swapIn(tmp: string, abs: string): void {
  if (!lstat(abs)) {
    fs.renameSync(tmp, abs)
    return
  }
  const old = sibling(abs, OLD_TAG)
  fs.renameSync(abs, old)
  try {
    fs.renameSync(tmp, abs)
  } catch (e) {
    fs.renameSync(old, abs)
    throw e
  }
  fs.rmSync(old, { recursive: true, force: true })
}

function removeFileAndSidecars(file: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(file + suffix, { force: true })
}

/**
 * Temps and set-aside old outputs of `abs` left by a process that no longer runs (killed mid-write):
 * temps are removed; an old output is put back if nothing replaced it, removed otherwise.
 */
function cleanStale(abs: string): void {
  const dir = path.dirname(abs)
  const base = `.${path.basename(abs)}`
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    if (!name.startsWith(base)) continue
    const m = /^(\.moe-harness-tmp-|\.moe-harness-old-)([0-9a-f]{6})-(\d+)-[0-9a-f]+(-wal|-shm|-journal)?$/.exec(name.slice(base.length))
    if (!m || m[2] !== HOST || processAlive(Number(m[3]))) continue
    const p = path.join(dir, name)
    if (m[1] === OLD_TAG && !lstat(abs)) fs.renameSync(p, abs)
    else fs.rmSync(p, { recursive: true, force: true })
  }
}
