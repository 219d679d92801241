// Padding, batching, shared-prefix branches and thread count never change a score.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import type { ScoreRequest } from '../../src/engine/packing.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', hidden: 32, experts: 8, topK: 2, ffn: 32, layers: 2, seed: 3, vocab: 320 })
const ckpt = openCheckpoint(model.dir)
const rng = mulberry32(99)
const seqs = Array.from({ length: 9 }, (_, i) => Array.from({ length: 3 + ((i * 7) % 23) }, () => Math.floor(rng() * 320)))
const maxDiff = (a: number[], b: number[]) => Math.max(0, ...a.map((v, i) => Math.abs(v - b[i])))

const variants: [string, VariantEdits][] = [
  ['plain', emptyEdits()],
  ['masked + neuron top-k', { overrides: {}, layers: { 0: { disabled: [2, 5], neuronKeep: 0.5 }, 1: { neuronKeep: 0.25 } } }],
]

describe('batch invariance', () => {
  for (const [name, edits] of variants) {
    for (const threads of [1, 2]) {
      it(`${name}: padded batches equal single sequences within 1e-5 at ${threads} thread(s)`, async () => {
        const scorer = await createLocalScorer(ckpt, edits, { device: 'cpu', threads })
        const requests = seqs.map(s => ({ prefix: s, branches: [], scorePrefixFrom: 1 }))
        const alone: number[][] = []
        for (const r of requests) alone.push((await scorer.score([r], { maxBatchTokens: 1 }))[0].prefix)
        for (const budget of [64, 256, 4096]) {
          const batched = await scorer.score(requests, { maxBatchTokens: budget })
          batched.forEach((res, i) => assert.ok(maxDiff(res.prefix, alone[i]) < 1e-5, `budget ${budget}, seq ${i}: ${maxDiff(res.prefix, alone[i])}`))
        }
        await scorer.release()
      })
    }
  }

  it('repeated runs at 2 threads give bit-identical results (no scatter races)', async () => {
    const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 2 })
    const requests = seqs.map(s => ({ prefix: s, branches: [], scorePrefixFrom: 1 }))
    const first = await scorer.score(requests, { maxBatchTokens: 4096 })
    for (let run = 0; run < 25; run++) {
      const again = await scorer.score(requests, { maxBatchTokens: 4096 })
      again.forEach((res, i) => assert.deepEqual(res.prefix, first[i].prefix))
    }
    await scorer.release()
  })

  it('continuation branches sharing a prefix score exactly like separate full sequences', async () => {
    const scorer = await createLocalScorer(ckpt, variants[1][1], { device: 'cpu', threads: 2 })
    const prefix = seqs[3]
    const branches = [[5, 6, 7], [300], [12, 250, 11, 10, 9]]
    const [shared] = await scorer.score([{ prefix, branches }])
    for (let k = 0; k < branches.length; k++) {
      const full: ScoreRequest = { prefix: [...prefix, ...branches[k]], branches: [], scorePrefixFrom: prefix.length }
      const [separate] = await scorer.score([full])
      assert.equal(shared.branches[k].length, branches[k].length)
      assert.ok(maxDiff(shared.branches[k], separate.prefix) < 1e-5, `branch ${k}: ${maxDiff(shared.branches[k], separate.prefix)}`)
      assert.deepEqual(shared.branchGreedy[k], separate.prefixGreedy)
    }
    await scorer.release()
  })

  it('greedy flags agree with the argmax of the log-probs', async () => {
    const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 1 })
    const prefix = [1, 2, 3, 4]
    // Score every vocabulary entry as a one-token branch: exactly one (the argmax) is greedy.
    const branches = Array.from({ length: 320 }, (_, t) => [t])
    const [res] = await scorer.score([{ prefix, branches }])
    const lps = res.branches.map(b => b[0])
    const best = lps.indexOf(Math.max(...lps))
    assert.deepEqual(res.branchGreedy.map((g, t) => (g[0] ? t : -1)).filter(t => t >= 0), [best])
    const total = lps.reduce((a, b) => a + Math.exp(b), 0)
    assert.ok(Math.abs(total - 1) < 1e-4, `probabilities over the vocab sum to ${total}`)
    await scorer.release()
  })
})
