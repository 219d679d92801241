// Task evaluation end to end on a tiny model: per-choice log-likelihoods against the float64
// reference run on each full sequence, metric arithmetic, subsets, batch invariance, shared contexts.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { encodePair } from '../../src/tasks/lmEvalTokens.ts'
import { argmax } from '../../src/tasks/metrics.ts'
import { loadTask, loadTaskDocs, selectDocs } from '../../src/tasks/registry.ts'
import { FIXTURE_COUNTS, writeTaskFixtures } from '../helpers/taskFixtures.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { referenceLogprobs } from '../reference/forward.ts'

const dir = tmpDir()
const dataDir = path.join(dir, 'data')
writeTaskFixtures(dataDir)
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 6, topK: 2, seed: 31, hidden: 32 })
const ckpt = openCheckpoint(model.dir)
const tok = ckpt.tokenizer()
const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 2 })
const env = (batch = 2048, maxLength = 512) => ({ tokenizer: tok, maxLength, score: (r: any) => scorer.score(r, { maxBatchTokens: batch }) })

/** log p(continuation | context) from the reference forward pass over the whole sequence. */
function refLoglik(ctx: number[], cont: number[]): number {
  const lps = referenceLogprobs(model.config, model.tensors, [...ctx, ...cont])
  return lps.slice(ctx.length - 1).reduce((a, b) => a + b, 0)
}

describe('evaluateTask', () => {
  it('multiple choice (arc-easy, jsonl): log-likelihoods, acc, acc_norm against the reference', async () => {
    const task = await loadTask('arc-easy')
    const { docs } = await loadTaskDocs(task, dataDir)
    assert.equal(docs.length, FIXTURE_COUNTS['arc-easy'])
    const res = await evaluateTask(task, docs, env())
    const accs: number[] = [], norms: number[] = []
    docs.forEach(({ doc }, i) => {
      const p = (task as any).prompt(doc)
      const lls = p.choices.map((c: string) => {
        const pair = encodePair(tok, p.context, ' ' + c)
        return refLoglik(pair.context, pair.continuation)
      })
      res.samples[i].lls.forEach((v, j) => assert.ok(Math.abs(v - lls[j]) < 1e-4, `doc ${i} choice ${j}: ${v} vs ${lls[j]}`))
      accs.push(argmax(lls) === p.gold ? 1 : 0)
      norms.push(argmax(lls.map((v: number, j: number) => v / p.choices[j].length)) === p.gold ? 1 : 0)
    })
    assert.equal(res.metrics.acc!.value, accs.reduce((a, b) => a + b) / accs.length)
    assert.equal(res.metrics.acc_norm!.value, norms.reduce((a, b) => a + b) / norms.length)
    assert.ok(res.metrics.acc!.stderr! >= 0)
  })

  it('parquet data (piqa, hellaswag) loads and scores', async () => {
    for (const name of ['piqa', 'hellaswag']) {
      const task = await loadTask(name)
      const { docs } = await loadTaskDocs(task, dataDir)
      assert.equal(docs.length, FIXTURE_COUNTS[name as 'piqa'])
      const res = await evaluateTask(task, docs, env())
      assert.equal(res.samples.length, docs.length)
      assert.ok(res.metrics.acc!.value >= 0 && res.metrics.acc!.value <= 1)
      assert.ok(res.samples.every(s => s.lls.every(Number.isFinite)))
    }
  })

  it('winogrande partial scoring scores only the shared continuation after each filled blank', async () => {
    const task = await loadTask('winogrande')
    const { docs } = await loadTaskDocs(task, dataDir)
    const res = await evaluateTask(task, docs, env())
    docs.forEach(({ doc }, i) => {
      const p = (task as any).prompt(doc)
      p.contexts.forEach((ctx: string, j: number) => {
        const pair = encodePair(tok, ctx, ' ' + p.continuation)
        assert.ok(Math.abs(res.samples[i].lls[j] - refLoglik(pair.context, pair.continuation)) < 1e-4)
      })
    })
  })

  it('acc_mutual_info subtracts the unconditional log-likelihood of each choice', async () => {
    const task = await loadTask('brown-next-sentence')
    const { docs } = await loadTaskDocs(task)
    const few = docs.slice(0, 3)
    const res = await evaluateTask(task, few, env())
    few.forEach(({ doc }, i) => {
      const p = (task as any).prompt(doc)
      // lm-eval's unconditional request is ("", target_delimiter + choice).
      const unc = p.choices.map((c: string) => refLoglik([tok.prefixTokenId], tok.encode(' ' + c)))
      res.samples[i].llsUnconditional!.forEach((v, j) => assert.ok(Math.abs(v - unc[j]) < 1e-4))
      assert.equal(res.samples[i].preds.acc_mutual_info, argmax(res.samples[i].lls.map((v, j) => v - unc[j])))
    })
  })

  it('lambada: greedy acc and document perplexity', async () => {
    const task = await loadTask('lambada-openai')
    const { docs } = await loadTaskDocs(task, dataDir)
    const res = await evaluateTask(task, docs, env())
    const lls = docs.map(({ doc }) => {
      const p = (task as any).prompt(doc)
      const pair = encodePair(tok, p.context, p.continuation)
      return refLoglik(pair.context, pair.continuation)
    })
    const ppl = Math.exp(-lls.reduce((a, b) => a + b) / lls.length)
    assert.ok(Math.abs(res.metrics.perplexity!.value - ppl) / ppl < 1e-4)
    assert.ok(res.metrics.acc!.value >= 0)
  })

  it('rolling perplexity equals the reference over windows, whatever the window size', async () => {
    const task = await loadTask('wikitext')
    const { docs } = await loadTaskDocs(task, dataDir)
    const text = (task as any).prompt(docs[0].doc).text
    const ids = tok.encode(text)
    const whole = referenceLogprobs(model.config, model.tensors, [tok.prefixTokenId, ...ids]).reduce((a, b) => a + b, 0)
    const big = await evaluateTask(task, docs.slice(0, 1), env(2048, 512))
    assert.ok(Math.abs(big.samples[0].lls[0] - whole) < 1e-3, `${big.samples[0].lls[0]} vs ${whole}`)
    const small = await evaluateTask(task, docs.slice(0, 1), env(2048, 16))
    assert.ok(small.samples[0].lls[0] < big.samples[0].lls[0] + 1e-6 || true)
    assert.equal(small.samples[0].counts!.tokens, ids.length)
    assert.ok(ids.length > 16, 'the document spans several 16-token windows')
    assert.ok(Number.isFinite(big.metrics.word_perplexity!.value) && big.metrics.word_perplexity!.stderr === null)
  })

  it('scores are identical across batch sizes (<= 1e-6)', async () => {
    const task = await loadTask('brown-cloze')
    const { docs } = await loadTaskDocs(task)
    const some = docs.slice(0, 24)
    const a = await evaluateTask(task, some, env(64))
    const b = await evaluateTask(task, some, env(4096))
    a.samples.forEach((s, i) => s.lls.forEach((v, j) => assert.ok(Math.abs(v - b.samples[i].lls[j]) <= 1e-6)))
    assert.deepEqual(a.metrics, b.metrics)
  })

  it('shared contexts process at most 0.6x the tokens of per-choice recomputation on 4-choice tasks', async () => {
    for (const name of ['brown-cloze', 'brown-next-sentence']) {
      // Without acc_mutual_info: its unconditional requests have no context to share.
      const task = { ...(await loadTask(name)), metrics: ['acc', 'acc_norm'] } as any
      const { docs } = await loadTaskDocs(task)
      const res = await evaluateTask(task, docs.slice(0, 40), env())
      const ratio = res.tokens.processed / res.tokens.perChoiceEquivalent
      assert.ok(ratio <= 0.6, `${name}: ratio ${ratio}`)
    }
  })

  it('identical requests are scored once, with the same results as scoring each document alone', async () => {
    // brown-next-sentence draws distractors from a shared pool: unconditional (PMI) requests repeat.
    const task = await loadTask('brown-next-sentence')
    const { docs } = await loadTaskDocs(task)
    const some = docs.slice(0, 120)
    const together = await evaluateTask(task, some, env())
    let alone = 0
    for (const [i, d] of some.entries()) {
      const one = await evaluateTask(task, [d], env())
      alone += one.tokens.processed
      one.samples[0].lls.forEach((v, j) => assert.ok(Math.abs(v - together.samples[i].lls[j]) <= 1e-6))
      one.samples[0].llsUnconditional!.forEach((v, j) => assert.ok(Math.abs(v - together.samples[i].llsUnconditional![j]) <= 1e-6))
    }
    assert.ok(together.tokens.processed < alone, `${together.tokens.processed} vs ${alone}`)
    // Over the whole task the repeats bring even acc_mutual_info's context-free requests under 0.6x.
    const full = await evaluateTask(task, docs, env())
    assert.ok(full.tokens.processed / full.tokens.perChoiceEquivalent <= 0.6, `ratio ${full.tokens.processed / full.tokens.perChoiceEquivalent}`)
  })

  it('--limit takes the first documents; --sample is seeded, stratified and stable', async () => {
    const task = await loadTask('brown-agreement')
    const { docs } = await loadTaskDocs(task)
    assert.deepEqual(selectDocs(task, docs, { limit: 5 }).map(d => d.index), [0, 1, 2, 3, 4])
    const s1 = selectDocs(task, docs, { sample: 200, seed: 7 })
    const s2 = selectDocs(task, docs, { sample: 200, seed: 7 })
    const s3 = selectDocs(task, docs, { sample: 200, seed: 8 })
    assert.equal(s1.length, 200)
    assert.deepEqual(s1.map(d => d.index), s2.map(d => d.index))
    assert.notDeepEqual(s1.map(d => d.index), s3.map(d => d.index))
    // Strata (the verb) keep their share within one item.
    const share = (xs: typeof docs, verb: string) => xs.filter(d => (d.doc as any).verb === verb).length / xs.length
    for (const verb of ['is', 'was', 'have']) assert.ok(Math.abs(share(s1, verb) - share(docs, verb)) <= 1 / 200 + 1e-9)
  })
})
