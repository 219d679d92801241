// A session whose cache entry was moved aside for a moment (builders replacing a damaged entry at once,
// graphStore.ts putInPlace) failed with onnxruntime's "External data path does not exist"; openGraphSession
// now looks the entry up again once. This checks the failure is recognised from onnxruntime's real error,
// and that the same lookup then opens a session with the same scores.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { halvedLayer0 } from '../helpers/edits.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { createSession } from '../../src/ort/ort.ts'
import { entryFileMissing, openGraphSession } from '../../src/engine/graphSession.ts'
import { sessionRunner } from '../../src/engine/scorer.ts'
import { packBatch } from '../../src/engine/packing.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'olmoe', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 3, dtype: 'BF16' })
const home = path.join(dir, 'home')

describe('a cache entry missing when its session opens', () => {
  it('is recognised from onnxruntime\'s error, and only that error', async () => {
    const ckpt = openCheckpoint(model.dir)
    const edits = halvedLayer0(ckpt)
    const graph = storedScoringGraph(ckpt, edits, {}, home)
    assert.ok(fs.existsSync(path.join(graph.dir, 'derived.bin')), 'edited weights live in the entry')
    fs.renameSync(graph.dir, `${graph.dir}-aside`)
    const error = await createSession(graph, { device: 'cpu', threads: 1 }).then(() => undefined, (e: unknown) => e)
    assert.ok(error instanceof Error, 'the session cannot open without derived.bin')
    assert.equal(entryFileMissing(error, graph.dir), true, (error as Error).message)
    assert.equal(entryFileMissing(error, path.join(home, 'graphs', 'another')), false)
    assert.equal(entryFileMissing(new Error('onnxruntime could not create the session: out of memory'), graph.dir), false)
    fs.renameSync(`${graph.dir}-aside`, graph.dir)
    // Put back, the lookup the retry makes finds it and the session scores as one opened directly.
    const request = { prefix: [1, 5, 9, 4], branches: [[7, 2], [3]] }
    const batch = packBatch([request], [0])
    const run = async () => {
      const s = await openGraphSession(ckpt, edits, {}, { device: 'cpu', threads: 1, cacheDir: home })
      try { return [...(await sessionRunner(s)(batch)).logprobs] } finally { await s.release() }
    }
    const first = await run()
    assert.equal(first.length, 3)
    assert.deepEqual(await run(), first)
  })
})
