// Folders by altitude (issue 12 §7): every module under src/ belongs to one layer (its top folder, or
// the top-level file itself), layers are ordered from the lowest seam to the CLI, and no import may run
// upward. A new upward import fails here with the file, the specifier and the two layers; fix it by
// moving the piece down (or the importer up), or, if the coupling is real, add it to KNOWN_UPWARD with
// the reason. A new folder under src/ must be placed in ALTITUDE first.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src')

/** Lowest first. A layer may import only itself and layers listed before it. */
export const ALTITUDE = [
  'errors', 'version', 'paths', // leaf files: no project imports
  'util', // suggest, hashing, output paths
  'defaults', 'config', // frozen defaults; the user config shape built on them
  'plugins', // plugin discovery (used by the task and method registries)
  'ort', // the only onnxruntime-node importer
  'identity', // content keys (hashes); imports the edit *type* only, see KNOWN_UPWARD
  'model', // checkpoints, tensors, tokenizer, model spec
  'edits', // the variant-edit model and variant folder files
  'onnx', // scoring / calibration graph builders
  'engine', // packing + scorer (batches through an ORT session)
  'tasks', // task definitions, evaluation, metrics
  'calibration', // calibration text and statistics collection
  'methods', // method contract, registry, helpers
  'variants', // preparing / exporting variants (runs methods)
  'pool', // the piscina pool and its worker (scores batches off-thread)
  'store', // SQLite results store
  'report', // static leaderboard site
  'sweep', // sweep planning and running (pool + store + variants)
  'cluster', // slurm / k8s sweeps
  'cache', // `moe-harness cache`: what the harness home holds, and pruning it
  'index', // the public plugin API facade
  'cli', // commands
] as const

/**
 * Upward imports that are known and accepted, as `importer -> target` (paths under src/). Each one
 * needs a reason; an entry that no longer matches any import fails the test, so the list stays true.
 */
export const KNOWN_UPWARD: Record<string, string> = {
  // keys hash an edit set, so they need its shape; type-only (erased at runtime).
  'identity/keys.ts -> edits/variantEdits.ts': 'editsContentHash takes a VariantEdits (type only)',
  // Opening a harness variant folder applies its moe_harness_variant.json hooks as base edits, so
  // the checkpoint reader returns edits; moving variantManifest.ts into edits/ would need the
  // checkpoint to move too.
  'model/checkpoint.ts -> edits/variantEdits.ts': 'Checkpoint.baseEdits (type only)',
  'model/variantManifest.ts -> edits/variantEdits.ts': 'readVariantHooks builds VariantEdits from the manifest',
}

export interface Violation { importer: string; specifier: string; from: string; to: string }

/** Layer of a path relative to src/: its top folder, or the file name without extension. */
export function layerOf(rel: string): string {
  const parts = rel.split('/')
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.(ts|mjs|js)$/, '')
}

/**
 * Relative specifiers of static imports, re-exports, side-effect imports and dynamic import(), read
 * with TypeScript's own pre-processor (so comments and template strings holding code don't count).
 */
export function importSpecifiers(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'))
}

/** Upward imports among `files` (path relative to src/ -> source text), minus the known ones. */
export function upwardImports(files: Map<string, string>, order: readonly string[] = ALTITUDE): Violation[] {
  const rank = new Map(order.map((layer, i) => [layer, i]))
  const found: Violation[] = []
  for (const [rel, source] of files) {
    const from = layerOf(rel)
    for (const specifier of importSpecifiers(source)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), specifier))
      if (target.startsWith('..')) continue // outside src/ (package.json and the like)
      const to = layerOf(target)
      if (to === from) continue
      const a = rank.get(from)
      const b = rank.get(to)
      if (a === undefined || b === undefined || b > a) found.push({ importer: rel, specifier, from, to })
    }
  }
  return found
}

function sourceFiles(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) sourceFiles(full, base, out)
    else if (/\.(ts|mjs)$/.test(entry.name)) out.set(path.relative(base, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'))
  }
  return out
}

const key = (v: Violation) => `${v.importer} -> ${path.posix.normalize(path.posix.join(path.posix.dirname(v.importer), v.specifier))}`

describe('folders by altitude (issue 12 §7)', () => {
  const files = sourceFiles(SRC)

  it('places every folder and top-level file of src/ in the altitude order', () => {
    const layers = new Set([...files.keys()].map(layerOf))
    const missing = [...layers].filter((l) => !(ALTITUDE as readonly string[]).includes(l))
    assert.deepEqual(missing, [], `src/ has layers not placed in ALTITUDE (tests/plugins/layering.test.ts): ${missing.join(', ')}; add each where its imports allow`)
    assert.ok(files.size > 50, `expected the real source tree, read ${files.size} files from ${SRC}`)
  })

  it('has no import that runs upward, except the listed ones', () => {
    const violations = upwardImports(files).filter((v) => !(key(v) in KNOWN_UPWARD))
    const lines = violations.map((v) => `src/${v.importer} imports '${v.specifier}': ${v.from} (level ${ALTITUDE.indexOf(v.from as never)}) must not import ${v.to} (level ${ALTITUDE.indexOf(v.to as never)})`)
    assert.deepEqual(lines, [], `upward imports; move the piece down or the importer up (order in ALTITUDE):\n${lines.join('\n')}`)
  })

  it('lists no stale exception', () => {
    const live = new Set(upwardImports(files).map(key))
    const stale = Object.keys(KNOWN_UPWARD).filter((k) => !live.has(k))
    assert.deepEqual(stale, [], 'KNOWN_UPWARD entries that no longer match an upward import; delete them')
  })

  it('catches an upward import of every syntax (the check can fail)', () => {
    const fake = new Map([
      ['util/a.ts', "import { x } from '../cli/main.ts'\n"],
      ['ort/b.ts', "export { y } from '../pool/pool.ts'\n"],
      ['model/c.ts', "import type { Z } from '../sweep/plan.ts'\n"],
      ['edits/d.ts', "const m = await import('../store/resultsStore.ts')\n"],
      ['engine/e.ts', "import '../report/charts.ts'\n"],
      ['cli/f.ts', "import { ok } from '../util/suggest.ts'\n// import { no } from '../nowhere/x.ts'\n"],
      ['util/h.ts', "const template = `import { x } from '../cli/main.ts'`\n"],
      ['newfolder/g.ts', "import { z } from '../util/suggest.ts'\n"],
    ])
    assert.deepEqual(upwardImports(fake).map((v) => `${v.from}->${v.to}`), ['util->cli', 'ort->pool', 'model->sweep', 'edits->store', 'engine->report', 'newfolder->util'])
  })
})
