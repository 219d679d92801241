// The code that builds scoring graphs, as a hash of its source text: part of the graph cache key
// (keys.ts graphKey), so a graph stored by another version of the builder is never opened in place
// of the one this code builds. GRAPH_FORMAT_VERSION alone depended on every change remembering to
// bump it; none of the builder changes after the cache landed did (found by a fresh-user trial: a
// graph cached by a work-in-progress checkout failed every later session with "Graph output
// (router_logits_0) does not exist", and a changed graph semantics would have scored the old one).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/**
 * Folders under src/ whose code decides what a built graph holds: the graph builders (onnx), what they
 * read from a checkpoint (model: config defaults, spec, tensors) and the edits they apply (edits).
 */
export const GRAPH_BUILDER_SOURCES = ['onnx', 'model', 'edits'] as const

/**
 * sha256 (16 hex characters) of the .ts/.mjs files under `dirs` of `root`, by relative path in sorted
 * order (path and content both count: a renamed file changes it). The same text in another checkout
 * gives the same value, so machines sharing a harness home share graphs. A folder that does not exist
 * counts as empty. Errors: file-system errors as thrown (the source tree is being executed, so readable).
 */
export function sourceFingerprint(root: string, dirs: readonly string[]): string {
  const h = crypto.createHash('sha256')
  const files: string[] = []
  const walk = (dir: string) => {
    if (!fs.existsSync(dir)) return
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (/\.(ts|mjs)$/.test(entry.name)) files.push(full)
    }
  }
  for (const d of dirs) walk(path.join(root, d))
  for (const file of files.map(f => path.relative(root, f).split(path.sep).join('/')).sort()) {
    h.update(`${file}\n`).update(fs.readFileSync(path.join(root, file))).update('\n')
  }
  return h.digest('hex').slice(0, 16)
}

let builderCode: string | undefined
/** sourceFingerprint of this checkout's GRAPH_BUILDER_SOURCES, read once per process (~240 KB). */
export function graphBuilderCode(): string {
  return (builderCode ??= sourceFingerprint(SRC, GRAPH_BUILDER_SOURCES))
}

/**
 * The project source files a module runs: `entry` and every file it reaches through relative `import` /
 * `export ... from` / `import()` specifiers, transitively. Type-only imports and exports are skipped (they
 * run nothing), package imports are not followed (their versions are the lockfile's business). Named
 * imports through a barrel (`import { removeLowestPerLayer } from '../src/index.ts'`) follow only the
 * barrel's re-exports that provide those names (`export *` lines always), so an edit to a module the
 * barrel also re-exports (defineConfig.ts) does not count as the method's code. A specifier without
 * the `.ts` extension is resolved as tsx resolves it (`.js` → `.ts`, added `.ts`, `/index.ts`); one
 * that resolves to no file is kept as its text. Sorted absolute paths.
 */
export function moduleClosure(entry: string): { files: string[]; unresolved: string[] } {
  const files = new Set<string>()
  const visited = new Set<string>()
  const unresolved = new Set<string>()
  const fromClause = /(?:^|[;\n}])\s*(import|export)\s+(?!type\b)([^'";]*?)\s*from\s*['"](\.{1,2}\/[^'"]+)['"]/g
  const bare = /(?:^|[;\n}])\s*import\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g
  const resolve = (from: string, spec: string): string | undefined => {
    const base = path.resolve(path.dirname(from), spec)
    for (const candidate of [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, path.join(base, 'index.ts')]) {
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate
    }
    return undefined
  }
  /** `{ a, type B, c as d }` → [[a, a], [c, d]] (source name, local/exported name); null for any other clause. */
  const namedList = (clause: string): [string, string][] | null => {
    const m = /^\{([^}]*)\}$/.exec(clause.trim())
    if (!m) return null
    return m[1].split(',').map(x => x.trim()).filter(x => x && !/^type\s/.test(x)).map(x => {
      const [src, as] = x.split(/\s+as\s+/)
      return [src.trim(), (as ?? src).trim()]
    })
  }
  const follow = (from: string, spec: string, names: Set<string> | 'all') => {
    const target = resolve(from, spec)
    if (target) walk(target, names)
    else unresolved.add(`${path.basename(from)}:${spec}`)
  }
  const walk = (file: string, names: Set<string> | 'all') => {
    const key = `${file}|${names === 'all' ? '*' : [...names].sort().join(',')}`
    if (visited.has(key)) return
    visited.add(key)
    files.add(file)
    const text = fs.readFileSync(file, 'utf8')
    for (const m of text.matchAll(fromClause)) {
      const [, kind, clause, spec] = m
      const list = namedList(clause)
      if (kind === 'import') {
        if (!list) follow(file, spec, 'all') // default, namespace or mixed import
        else if (list.length) follow(file, spec, new Set(list.map(([src]) => src)))
        continue
      }
      if (clause.trim() === '*') {
        follow(file, spec, names) // export * from: passes the same names on
        continue
      }
      if (!list) {
        if (names === 'all' || names.has(clause.trim().replace(/^\*\s+as\s+/, ''))) follow(file, spec, 'all')
        continue
      }
      const used = list.filter(([, out]) => names === 'all' || names.has(out))
      if (used.length) follow(file, spec, new Set(used.map(([src]) => src)))
    }
    for (const m of text.matchAll(bare)) follow(file, m[1] ?? m[2], 'all')
  }
  walk(path.resolve(entry), 'all')
  return { files: [...files].sort(), unresolved: [...unresolved].sort() }
}

/**
 * sha256 (16 hex characters) of the code a module runs (moduleClosure): each file's path relative to
 * `root` and its content. A method's variant key uses it (methods/registry.ts methodFileHash), so an
 * edit to a shared helper the method calls (src/methods/helpers.ts, merging.ts, a plugin's own
 * helper file) re-prepares its variants, as an edit to the method file does.
 */
export function moduleFingerprint(entry: string, root: string): string {
  // A sweep asks once per planned variant: reuse the answer while no file of the closure changed.
  const cached = closureCache.get(entry)
  if (cached && cached.root === root && cached.stats.every(([f, stamp]) => fileStamp(f) === stamp)) return cached.hash
  const { files, unresolved } = moduleClosure(entry)
  const h = crypto.createHash('sha256')
  for (const file of files) h.update(`${path.relative(root, file).split(path.sep).join('/')}\n`).update(fs.readFileSync(file)).update('\n')
  for (const u of unresolved) h.update(`unresolved ${u}\n`)
  const hash = h.digest('hex').slice(0, 16)
  closureCache.set(entry, { root, hash, stats: files.map(f => [f, fileStamp(f)]) })
  return hash
}

const closureCache = new Map<string, { root: string; hash: string; stats: [string, string][] }>()
const fileStamp = (file: string): string => {
  try {
    const st = fs.statSync(file)
    return `${st.size}:${st.mtimeMs}:${st.ino}`
  } catch {
    return 'missing'
  }
}
