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
