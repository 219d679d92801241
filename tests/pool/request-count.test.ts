// A batch never has more rows than the requests scored together (one task's: evaluateTask makes one
// scoring call; planBatches puts a request and all its branches in one row), so the pool plans at most
// that many rows: with batchTokens 1,000,000 a five-document sweep planned 3906 rows of 256 tokens
// (~48 GB per worker) and ran one worker, or said scoring would run out of memory. And narrower rows
// can fill more of a budget than the widest: the plan is the costliest shape of all (an OLMoE-shaped
// worker under 2048 tokens of 1100-token requests: 1 x 1100 planned 3.7 GB, 2 x 1024 needs 4.6 GB).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyResult, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { estimateWorkerBytes, fitPoolToModels, worstBatch } from '../../src/pool/memoryFit.ts'
import { formatBytes } from '../../src/util/bytes.ts'
import { evaluateTask } from '../../src/tasks/evaluate.ts'
import { loadTask, loadTaskDocs } from '../../src/tasks/registry.ts'
import { longestRequestBound, requestCountBound } from '../../src/tasks/requestBound.ts'
import { lastJson, ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const TINY = path.join(ROOT, 'models', 'tiny-moe')
const GB = 1e9
const ckpt = openCheckpoint(TINY, { warn: () => {} })

/** The requests evaluateTask builds for the first `docs` documents (a scorer that records them and scores nothing). */
async function builtRequests(name: string, docs: number, maxLength: number): Promise<ScoreRequest[]> {
  const task = await loadTask(name)
  let requests: ScoreRequest[] = []
  await evaluateTask(task, (await loadTaskDocs(task)).docs.slice(0, docs), { tokenizer: ckpt.tokenizer(), maxLength, score: async rs => { requests = [...rs]; return rs.map(emptyResult) } })
  return requests
}

describe('requestCountBound', () => {
  // The short contexts split items whose context does not fit beside a choice (one request per choice:
  // brown-cloze at 24 tokens builds 130 requests for 40 items) and documents into several windows.
  const cases = [['brown-cloze', 24], ['brown-next-sentence', 128], ['brown-agreement', 96], ['brown-perplexity', 24]] as const
  for (const [name, short] of cases) {
    for (const maxLength of [short, 256]) {
      it(`${name} at a ${maxLength}-token context: at least the requests evaluateTask builds, and of their order`, async () => {
        const task = await loadTask(name)
        const docs = (await loadTaskDocs(task)).docs.slice(0, 40)
        const bound = requestCountBound(task, docs, maxLength)
        const built = (await builtRequests(name, 40, maxLength)).length
        assert.ok(bound >= built, `bound ${bound} < built ${built}`)
        assert.ok(bound <= 6 * built, `bound ${bound} vs built ${built}`)
      })
    }
  }

  it('a multiple-choice item that fits is one request (its choices are branches of one row)', async () => {
    const task = await loadTask('brown-cloze')
    const docs = (await loadTaskDocs(task)).docs.slice(0, 5)
    assert.equal(requestCountBound(task, docs, 4096), 5)
    assert.equal((await builtRequests('brown-cloze', 5, 4096)).length, 5)
    assert.equal(requestCountBound(task, [], 4096), 0)
  })
})

describe('the worst batch of a huge token budget', () => {
  const spec = ckpt.spec

  it('has no more rows than requests, and the plan costs what that batch costs', () => {
    const rowTokens = spec.maxPositions
    assert.deepEqual(worstBatch(spec, 1e6, undefined, 5), { rows: 5, rowTokens })
    assert.deepEqual(worstBatch(spec, 1e6, 100, 5), { rows: 5, rowTokens: 100 })
    assert.deepEqual(worstBatch(spec, 1e6, undefined, 0), { rows: 1, rowTokens })
    // The budget still bounds rows when it holds fewer than the requests: 1000 tokens hold 3 rows of
    // 256, or 4 of 250, which cost more.
    assert.deepEqual(worstBatch(spec, 1000, undefined, 5), { rows: 4, rowTokens: 250 })

    const per = estimateWorkerBytes(spec, 5, rowTokens)
    const base = { models: [ckpt], batchTokens: 1e6, requestedWorkers: 2, cores: 2, availableBytes: 20 * GB }
    const bounded = fitPoolToModels({ ...base, mostRequests: () => 5 })
    assert.equal(bounded.workers, 2, bounded.reason)
    assert.ok(bounded.reason.includes(`+ 2 x ${formatBytes(per)} per worker at batches of 5 x ${rowTokens} tokens`), bounded.reason)
    // Without the bound: rows that no five-request task can form, more than one worker's share of 20 GB.
    const unbounded = fitPoolToModels(base)
    assert.deepEqual([unbounded.workers, unbounded.reduced], [1, true])
    assert.match(unbounded.reason, /at batches of 4000 x 250 tokens/)
  })

  it('is the costliest batch planBatches can form: every row count up to the requests, rows as wide as the budget allows', () => {
    // Exhaustive: r rows of min(widest, floor(budget / r)) tokens (one row may be the widest request
    // even past the budget); the widest among equals.
    const exhaustive = (budget: number, longest?: number, most?: number) => {
      const widest = longest ?? spec.maxPositions
      let best = { rows: 1, rowTokens: widest }, bytes = estimateWorkerBytes(spec, 1, widest)
      for (let r = 2; r <= Math.min(budget, most ?? Infinity); r++) {
        const T = Math.min(widest, Math.floor(budget / r))
        const b = estimateWorkerBytes(spec, r, T)
        if (b > bytes) [best, bytes] = [{ rows: r, rowTokens: T }, b]
      }
      return best
    }
    for (const budget of [100, 1000, 2048, 5000, 12_345]) {
      for (const longest of [undefined, 100, 300]) {
        for (const most of [undefined, 1, 3, 7, 50]) {
          assert.deepEqual(worstBatch(spec, budget, longest, most), exhaustive(budget, longest, most), `budget ${budget}, longest ${longest}, most ${most}`)
        }
      }
    }
  })

  it('a sweep with batchTokens 1,000,000 over five documents keeps its 2 workers and plans 5 rows', async () => {
    const dir = tmpDir('moe-request-count-')
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { tiny: TINY }, methods: ['magnitude-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 5 }, batchTokens: 1_000_000, pool: { workers: 2 },
    })
    const r = runCli(['sweep', '--config', config, '--db', path.join(dir, 'results.sqlite'), '--json'], { env: { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 0, r.stderr)
    const line = r.stderr.split('\n').find(l => l.startsWith('pool: '))!
    const task = await loadTask('brown-cloze')
    const longest = longestRequestBound(task, (await loadTaskDocs(task)).docs.slice(0, 5), ckpt.spec.maxPositions)
    const per = formatBytes(estimateWorkerBytes(ckpt.spec, 5, longest))
    assert.match(line, new RegExp(`^pool: 2 workers x \\d+ threads? \\(model .* \\+ 2 x ${per} per worker at batches of 5 x ${longest} tokens \\+ 5 sessions x .* = .* fits 85% of`))
    assert.equal(lastJson(r.stdout).pool.workers, 2)
    assert.equal(lastJson(r.stdout).completed, 1)
  })
})
