// The committed built-in model: it loads through the engine with the training code's own
// log-probabilities, and its model card's task scores are reproduced by the harness.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { MODELS_DIR } from '../../src/paths.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { builtInTasks, loadTaskDocs } from '../../src/tasks/registry.ts'

const dir = path.join(MODELS_DIR, 'tiny-moe')
const ckpt = openCheckpoint(dir)

describe('built-in model models/tiny-moe', () => {
  it('is a MixtralForCausalLM whose log-probs equal the training code\'s within 1e-4', async () => {
    assert.equal(ckpt.spec.architecture, 'MixtralForCausalLM')
    const ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference-logprobs.json'), 'utf8'))
    const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 2 })
    const res = await scorer.score(ref.windows.map((w: { ids: number[] }) => ({ prefix: w.ids, branches: [], scorePrefixFrom: 1 })))
    await scorer.release()
    res.forEach((r, i) => {
      assert.equal(r.prefix.length, ref.windows[i].ids.length - 1)
      const worst = Math.max(...r.prefix.map((v, j) => Math.abs(v - ref.windows[i].logprobs[j])))
      assert.ok(worst < 1e-4, `window ${i}: ${worst}`)
    })
  })

  it('reproduces the model card\'s built-in task scores, each well above chance', { skip: !fs.existsSync(path.join(dir, 'eval-results.json')) && 'no eval-results.json yet' }, async () => {
    const card = JSON.parse(fs.readFileSync(path.join(dir, 'eval-results.json'), 'utf8'))
    const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 2 })
    try {
      for (const task of await builtInTasks()) {
        const { docs } = await loadTaskDocs(task)
        const r = await evaluateTask(task, docs, { tokenizer: ckpt.tokenizer(), maxLength: ckpt.spec.maxPositions, score: q => scorer.score(q, { maxBatchTokens: 4096 }) })
        for (const [metric, m] of Object.entries(r.metrics)) {
          assert.ok(Math.abs(m!.value - card.results[task.name][metric].value) <= 1e-6 * Math.max(1, Math.abs(m!.value)), `${task.name} ${metric}: ${m!.value} vs card ${card.results[task.name][metric].value}`)
        }
      }
    } finally {
      await scorer.release()
    }
    const acc = (t: string, m: string) => card.results[t][m].value
    assert.ok(acc('brown-cloze', 'acc') >= 0.35, 'cloze at least 10 points above chance (25%)')
    assert.ok(acc('brown-next-sentence', 'acc_mutual_info') >= 0.35, 'next-sentence at least 10 points above chance (25%)')
    assert.ok(acc('brown-agreement', 'acc') >= 0.75, 'agreement at least 25 points above chance (50%)')
  })
})
