// The graph cache key covers the code that builds graphs: a graph stored by other builder code (an
// upgrade, another branch, a work-in-progress checkout sharing the harness home) is never opened in
// place of the graph this code builds. Found by a fresh-user trial: a graph cached by a checkout whose
// layer loop had changed failed every later session of the committed code ("Graph output
// (router_logits_0) does not exist"), since GRAPH_FORMAT_VERSION had not been bumped.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { graphKey } from '../../src/identity/keys.ts'
import { GRAPH_BUILDER_SOURCES, graphBuilderCode, sourceFingerprint } from '../../src/identity/sourceFingerprint.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('graph cache key and the builder code', () => {
  it('hashes the builder folders of this checkout; any edit, added or renamed file changes it', () => {
    const root = tmpDir()
    for (const d of GRAPH_BUILDER_SOURCES) fs.cpSync(path.join(ROOT, 'src', d), path.join(root, d), { recursive: true })
    const copy = sourceFingerprint(root, GRAPH_BUILDER_SOURCES)
    assert.match(copy, /^[0-9a-f]{16}$/)
    // Another checkout with the same text shares graphs.
    assert.equal(copy, graphBuilderCode())

    const moeGraph = path.join(root, 'onnx', 'moeGraph.ts')
    fs.appendFileSync(moeGraph, '\n// a changed layer loop\n')
    const edited = sourceFingerprint(root, GRAPH_BUILDER_SOURCES)
    assert.notEqual(edited, copy)

    fs.writeFileSync(path.join(root, 'model', 'newDefaults.ts'), 'export const x = 1\n')
    const added = sourceFingerprint(root, GRAPH_BUILDER_SOURCES)
    assert.notEqual(added, edited)
    fs.renameSync(path.join(root, 'model', 'newDefaults.ts'), path.join(root, 'model', 'otherDefaults.ts'))
    const renamed = sourceFingerprint(root, GRAPH_BUILDER_SOURCES)
    assert.notEqual(renamed, added)
    // Files outside the builder folders (a CLI command, a top-level file) do not count.
    fs.writeFileSync(path.join(root, 'notes.ts'), 'export {}\n')
    fs.mkdirSync(path.join(root, 'cli'))
    fs.writeFileSync(path.join(root, 'cli', 'x.ts'), 'export {}\n')
    assert.equal(sourceFingerprint(root, GRAPH_BUILDER_SOURCES), renamed)
  })

  it('gives another graph key for other builder code, the same for this code', () => {
    const k = { checkpoint: { dir: '/m', files: [] }, editsHash: 'e'.repeat(24), options: { precision: 'float32' }, allowNonfinite: false }
    assert.match(graphKey(k), /^[0-9a-f]{32}$/)
    assert.equal(graphKey(k), graphKey({ ...k, code: graphBuilderCode() }))
    assert.notEqual(graphKey({ ...k, code: 'a'.repeat(16) }), graphKey({ ...k, code: 'b'.repeat(16) }))
    assert.notEqual(graphKey(k), graphKey({ ...k, code: 'a'.repeat(16) }))
  })
})
