// A sweep sizes its pool by the requests it builds, not by the model's context: longestRequestBound
// (src/tasks/requestBound.ts) bounds, without tokenizing, the longest row evaluateTask sends to the
// graph; a DeepSeek-V2-sized context (163,840 tokens) then plans a batch of the tasks' size, and a
// real sweep of such a model keeps its two workers and says it fits.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { packedLength, emptyResult, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { estimateWorkerBytes, fitPoolToModels, worstBatch } from '../../src/pool/memoryFit.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { loadTask, loadTaskDocs } from '../../src/tasks/registry.ts'
import { longestRequestBound } from '../../src/tasks/requestBound.ts'
import { lastJson, ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const TINY = path.join(ROOT, 'models', 'tiny-moe')
const GB = 1e9

/** The requests evaluateTask builds for `docs` (a scorer that records them and returns nothing). */
async function builtRequests(name: string, docs: number, maxLength: number): Promise<ScoreRequest[]> {
  const task = await loadTask(name)
  const all = (await loadTaskDocs(task)).docs.slice(0, docs)
  let requests: ScoreRequest[] = []
  await evaluateTask(task, all, { tokenizer: openCheckpoint(TINY).tokenizer(), maxLength, score: async rs => { requests = [...rs]; return rs.map(emptyResult) } })
  return requests
}

describe('longestRequestBound', () => {
  for (const [name, maxLength] of [['brown-cloze', 256], ['brown-next-sentence', 256], ['brown-agreement', 256], ['brown-perplexity', 256], ['brown-perplexity', 4096]] as const) {
    it(`${name} at a ${maxLength}-token context: at least the longest row evaluateTask builds, and of its order`, async () => {
      const task = await loadTask(name)
      const docs = (await loadTaskDocs(task)).docs.slice(0, 60)
      const bound = longestRequestBound(task, docs, maxLength)
      const longest = Math.max(...(await builtRequests(name, 60, maxLength)).map(packedLength))
      assert.ok(bound >= longest, `bound ${bound} < built ${longest}`)
      // Bytes over tokens of English text under a BPE tokenizer: a few times, not orders of magnitude.
      assert.ok(bound <= 8 * longest, `bound ${bound} vs built ${longest}`)
    })
  }

  it('a token-perplexity task is bounded by its 2048-token window at a long context, not by the context', async () => {
    const task = await loadTask('brown-perplexity')
    const docs = (await loadTaskDocs(task)).docs
    assert.equal(longestRequestBound(task, docs.slice(0, 3), 163_840), 2048)
    assert.equal(longestRequestBound(task, docs.slice(0, 3), 1024), 1024)
  })
})

describe('a pool for a model with a 163,840-token context', () => {
  const ckpt = openCheckpoint(TINY)
  const huge = { spec: { ...ckpt.spec, maxPositions: 163_840 }, tensors: ckpt.tensors }

  it('plans batches of the requests the tasks build, where the context alone plans 10 GB per worker', async () => {
    const task = await loadTask('brown-cloze')
    const docs = (await loadTaskDocs(task)).docs.slice(0, 8)
    const bound = (maxLength: number) => longestRequestBound(task, docs, maxLength)
    const byContext = fitPoolToModels({ models: [huge], batchTokens: 2048, requestedWorkers: 2, availableBytes: 20 * GB, cores: 2 })
    const byRequests = fitPoolToModels({ models: [huge], batchTokens: 2048, requestedWorkers: 2, availableBytes: 20 * GB, cores: 2, longestRequest: bound })
    // One 163,840-token row: attention and head in blocks (sequenceChunks.ts), the rest grows with the length.
    assert.deepEqual([byContext.workers, byContext.reduced], [1, true])
    assert.match(byContext.reason, /1 x 1\d\.\d GB per worker at batches of 1 x 163840 tokens/)
    assert.equal(byRequests.workers, 2)
    assert.equal(byRequests.fits, true)
    const worst = worstBatch(huge.spec, 2048, bound(163_840))
    // Rows no wider than the tasks' longest request, within the budget (narrower rows may fill more of it: worstBatch).
    assert.ok(worst.rowTokens <= bound(163_840) && worst.rows * worst.rowTokens <= 2048, JSON.stringify(worst))
    assert.ok(estimateWorkerBytes(huge.spec, worst.rows, worst.rowTokens) < 1 * GB)
  })

  it('a real sweep of such a model keeps its 2 workers and says the plan fits', () => {
    const dir = tmpDir('moe-request-bound-')
    const model = path.join(dir, 'long-context')
    fs.cpSync(TINY, model, { recursive: true })
    const configFile = path.join(model, 'config.json')
    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), max_position_embeddings: 163_840 }))
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), { models: { long: model }, methods: ['magnitude-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 4 }, pool: { workers: 2 } })
    const r = runCli(['sweep', '--config', config, '--db', path.join(dir, 'results.sqlite'), '--json'], { env: { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 0, r.stderr)
    const line = r.stderr.split('\n').find(l => l.startsWith('pool: '))!
    assert.match(line, /^pool: 2 workers x \d+ threads? \(model .* at batches of \d+ x \d+ tokens \+ 5 sessions x .* = .* fits 85% of/)
    const rowTokens = Number(/at batches of \d+ x (\d+) tokens/.exec(line)![1])
    assert.ok(rowTokens <= 1024, line) // four brown-cloze items, not the 163,840-token context
    assert.deepEqual(lastJson(r.stdout).pool.workers, 2)
    assert.equal(lastJson(r.stdout).completed, 1)
  })
})
