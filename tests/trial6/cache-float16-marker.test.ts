// A float16 run remembers its weight-range check in graphs/.float16-range-<key> (src/onnx/graphStore.ts
// float16Overflows). `moe-harness cache` listed that file as "not ours, kept", so the harness's own
// marker looked like a stranger's file and `cache prune --graphs` never removed it.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('cache and the float16 range marker', () => {
  it('is listed as ours and removed by cache prune --graphs', () => {
    const dir = tmpDir()
    const home = path.join(dir, 'home')
    const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', dtype: 'BF16', seed: 3 }).dir
    const env = { MOE_HARNESS_HOME: home }
    const scored = runCli(['score', '--model', model, '--text', 'The quick brown fox', '--precision', 'float16'], { env })
    assert.equal(scored.status, 0, scored.stderr)
    const markers = fs.readdirSync(path.join(home, 'graphs')).filter(n => n.startsWith('.float16-range-'))
    assert.equal(markers.length, 1)

    const listed = runCli(['cache'], { env })
    assert.equal(listed.status, 0, listed.stderr)
    assert.doesNotMatch(listed.stdout, /not ours/)

    const pruned = runCli(['cache', 'prune', '--graphs', '--yes'], { env })
    assert.equal(pruned.status, 0, pruned.stderr)
    assert.deepEqual(fs.readdirSync(path.join(home, 'graphs')).filter(n => n.startsWith('.float16-range-')), [])
  })
})
