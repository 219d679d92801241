// A multiple-choice request packs every choice after its shared context in one row (src/engine/
// packing.ts), so its row is longer than the model's context whenever its choices are long: each choice
// fits beside the context, not all of them. worstBatch capped the row width at the context, and since
// the pool plans no more rows than a task has requests (requestCountBound), a task of four such items
// under batchTokens 2048 planned 4 x 256 tokens on the tiny model where the real batch is 4 x 445 (a
// worker estimate 27% short: workers started that the plan said fit). The width is now the task's bound,
// and the bounds of requests truncated to the context (lm-eval's left truncation) say so themselves.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyResult, packedLength, planBatches, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { estimateWorkerBytes, worstBatch } from '../../src/pool/memoryFit.ts'
import type { TaskDefinition } from '../../src/tasks/defineTask.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { longestRequestBound, requestCountBound } from '../../src/tasks/requestBound.ts'
import { ROOT } from '../helpers/cli.ts'

const ckpt = openCheckpoint(path.join(ROOT, 'models', 'tiny-moe'), { warn: () => {} })
const M = ckpt.spec.maxPositions
/** `n` ASCII letters, varied by `seed` (the tiny model's byte-level BPE: about one token each). */
const letters = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 'abcdefghij'[(i * 7 + seed) % 10]).join('')

async function built(task: TaskDefinition, docs: { index: number; doc: unknown }[]): Promise<ScoreRequest[]> {
  let requests: ScoreRequest[] = []
  await evaluateTask(task, docs, { tokenizer: ckpt.tokenizer(), maxLength: M, score: async rs => { requests = [...rs]; return rs.map(emptyResult) } })
  return requests
}

describe('the worst batch of multiple-choice items with long choices', () => {
  const task = { name: 'long-choices', kind: 'multiple_choice', metrics: ['acc'], prompt: (d: { c: string; ch: string[] }) => ({ context: d.c, choices: d.ch, gold: 0 }) } as unknown as TaskDefinition
  const docs = Array.from({ length: 4 }, (_, i) => ({ index: i, doc: { c: letters(M / 2, i), ch: [1, 2, 3, 4].map(k => letters(M / 2 - 20, i + k)) } }))

  it('costs at least every batch planBatches forms from the requests evaluateTask builds', async () => {
    const requests = await built(task, docs)
    const widths = requests.map(packedLength)
    assert.equal(requests.length, 4)
    assert.ok(Math.min(...widths) > 1.5 * M, `rows of ${widths} tokens, past the ${M}-token context`)
    const longest = longestRequestBound(task, docs, M)
    const most = requestCountBound(task, docs, M)
    assert.ok(longest >= Math.max(...widths) && most >= requests.length, `bounds ${longest} x ${most}`)
    for (const budget of [256, 512, 2048, 4096]) {
      const worst = worstBatch(ckpt.spec, budget, longest, most)
      const planned = estimateWorkerBytes(ckpt.spec, worst.rows, worst.rowTokens)
      for (const batch of planBatches(requests, budget)) {
        const width = Math.max(...batch.map(i => widths[i]))
        assert.ok(estimateWorkerBytes(ckpt.spec, batch.length, width) <= planned, `budget ${budget}: a batch of ${batch.length} x ${width} tokens costs more than the planned ${worst.rows} x ${worst.rowTokens}`)
      }
    }
  })

  it('requests truncated to the context are bounded by it, whatever their text', async () => {
    const long = letters(8 * M, 0)
    const loglikelihood = { name: 'long-ll', kind: 'loglikelihood', metrics: ['perplexity'], prompt: (d: { c: string }) => ({ context: d.c, continuation: ' end' }) } as unknown as TaskDefinition
    const multipleInput = { name: 'long-mi', kind: 'multiple_input', metrics: ['acc'], prompt: (d: { c: string }) => ({ contexts: [d.c, d.c.slice(1)], continuation: 'end', gold: 0 }) } as unknown as TaskDefinition
    const truncatedChoices = { name: 'long-mc', kind: 'multiple_choice', metrics: ['acc'], prompt: (d: { c: string }) => ({ context: d.c, choices: ['a', 'b'], gold: 0 }) } as unknown as TaskDefinition
    for (const t of [loglikelihood, multipleInput, truncatedChoices]) {
      const one = [{ index: 0, doc: { c: long } }]
      const widths = (await built(t, one)).map(packedLength)
      const bound = longestRequestBound(t, one, M)
      assert.ok(bound >= Math.max(...widths), `${t.name}: bound ${bound} < ${widths}`)
      assert.ok(bound <= M + 8, `${t.name}: bound ${bound} for rows of at most ${Math.max(...widths)} tokens (context ${M})`)
      assert.deepEqual(worstBatch(ckpt.spec, 4 * M, bound, 1).rows, 1)
    }
  })
})
