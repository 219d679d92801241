// The pool's plan counts onnxruntime's state per weight tensor of every session (memoryFit.ts
// sessionBytes). Before it did, a fresh user's tiny-width Qwen3-30B-A3B-shaped checkpoint (48 layers x
// 128 experts, 18,867 tensors) at --workers 2 was planned at ~970 MB and reached 4.3 GB RSS: the plan
// counted a fixed 256 MiB per worker whatever the graph. One child process holds the sessions of the
// main process and of one worker (MAIN_SESSIONS + SESSIONS_PER_WORKER) on 4 layers of that shape (1575
// tensors), the engine's own (openGraphSession: mapped weights, cached graph), scores a batch in each and
// reports its peak RSS: the plan for one worker must cover it, and by no more than 2.5x. ~20 s.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { REAL, tinyWidth, writeCheckpoint } from '../../bench/syntheticCheckpoint.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { fitPool, MAIN_SESSIONS, poolBytes, poolFootprint, SESSION_BYTES_PER_TENSOR, sessionBytes, SESSIONS_PER_WORKER } from '../../src/pool/memoryFit.ts'
import { formatBytes } from '../../src/util/bytes.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir('session-memory-')
const src = (file: string) => JSON.stringify(path.join(ROOT, 'src', file))
const MB = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`

/** Peak RSS (bytes) of a process that opens `sessions` scoring sessions of `model` and scores `rows` x `tokens` tokens in each, one thread. */
function peakRss(model: string, sessions: number, rows: number, tokens: number): number {
  const script = path.join(dir, 'sessions.mts')
  fs.writeFileSync(script, `
    import { openCheckpoint } from ${src('model/checkpoint.ts')}
    import { emptyEdits } from ${src('edits/variantEdits.ts')}
    import { openGraphSession } from ${src('engine/graphSession.ts')}
    import { packBatch } from ${src('engine/packing.ts')}
    import { batchFeeds } from ${src('engine/scorer.ts')}
    const [model, count, rows, tokens, cacheDir] = process.argv.slice(2)
    const ckpt = openCheckpoint(model, { warn: () => {} })
    const held = []
    for (let i = 0; i < Number(count); i++) held.push(await openGraphSession(ckpt, emptyEdits(), {}, { device: 'cpu', threads: 1, cacheDir }))
    const requests = Array.from({ length: Number(rows) }, (_, r) => ({ prefix: Array.from({ length: Number(tokens) + 1 }, (_, i) => 1 + ((i * 7919 + r * 31) % (ckpt.spec.vocabSize - 1))), branches: [], scorePrefixFrom: 1 }))
    const batch = packBatch(requests, requests.map((_, i) => i))
    let finite = true
    for (const s of held) {
      const out = await s.run(batchFeeds(batch), ['logprobs', 'greedy'])
      finite &&= out.logprobs.data.length === Number(rows) * Number(tokens) && out.logprobs.data.every(Number.isFinite)
    }
    const maxRss = process.resourceUsage().maxRSS * 1024
    for (const s of held) await s.release()
    console.log(JSON.stringify({ finite, maxRss }))
  `)
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, model, String(sessions), String(rows), String(tokens), path.join(dir, 'home')], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 })
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
  assert.equal(out.finite, true)
  return out.maxRss
}

describe("the pool's plan and onnxruntime's state per weight tensor", () => {
  it('covers the peak RSS of the main process and one worker holding their sessions on a many-expert checkpoint, and not by more than 2.5x', async () => {
    const model = path.join(dir, 'qwen3-4')
    await writeCheckpoint(model, { ...tinyWidth(REAL.qwen3!.config), num_hidden_layers: 4, max_window_layers: 4 }, 7)
    const ckpt = openCheckpoint(model, { warn: () => {} })
    assert.equal(ckpt.tensors.size, 1575)
    const rows = 2, tokens = 32
    const plan = poolFootprint({ models: [ckpt], batchTokens: rows * tokens, longestRequest: () => tokens, mostRequests: () => rows })
    assert.deepEqual(plan.batch, { rows, rowTokens: tokens })
    assert.equal(plan.sessionBytes, 1575 * SESSION_BYTES_PER_TENSOR)
    const estimate = poolBytes(plan, 1)
    const rss = peakRss(model, MAIN_SESSIONS + SESSIONS_PER_WORKER, rows, tokens)
    // Measured: 429 MB at peak against 588 MB planned; without the sessions the plan said 278 MB (the test failed so).
    assert.ok(rss > plan.modelBytes + plan.perWorkerBytes, `the sessions are what this measures: peak ${MB(rss)} within the plan without them, ${MB(plan.modelBytes + plan.perWorkerBytes)}`)
    assert.ok(rss <= estimate, `peak RSS ${MB(rss)} exceeds the plan for one worker, ${MB(estimate)} (${MB(plan.modelBytes)} weights + ${MAIN_SESSIONS + SESSIONS_PER_WORKER} sessions x ${MB(plan.sessionBytes)} + ${MB(plan.perWorkerBytes)} per worker)`)
    assert.ok(estimate <= 2.5 * rss, `the plan for one worker, ${MB(estimate)}, is more than 2.5x the peak RSS ${MB(rss)}`)
  })

  it("plans the fresh user's Qwen3-30B-A3B shape at tiny width (48 x 128 experts) with its sessions, and starts one worker where two do not fit", () => {
    // 3 + 48 x (8 + 128 x 3) tensors, as tests/pool/mapLimit.test.ts counts them.
    const s = sessionBytes({ tensors: { size: 18_867 } as never })
    assert.equal(s, 18_867 * 64 * 1024) // 1.24 GB: measured 1.19 GB a session, scored (memoryFit.ts SESSION_BYTES_PER_TENSOR)
    // The trial's plan: ~970 MB for 2 workers (80 MB of weights + 2 x 445 MB); 4.3 GB RSS measured.
    const trial = { requestedWorkers: 2, cores: 2, modelBytes: 80e6, perWorkerBytes: 445e6, batch: { rows: 8, rowTokens: 256 } }
    assert.equal(poolBytes(trial, 2), 970e6)
    assert.equal(poolBytes({ ...trial, sessionBytes: s }, 2), 970e6 + 5 * s)
    // 8 GB available: 85% is 6.8 GB, where 2 workers need 7.15 GB and 1 needs 4.23 GB.
    const fit = fitPool({ ...trial, availableBytes: 8e9, sessionBytes: s })
    assert.deepEqual([fit.workers, fit.threads, fit.fits, fit.reduced], [1, 2, true, true])
    assert.equal(fit.reason, `pool: 1 worker x 2 threads, reduced from 2 requested workers because model 80.0 MB mapped once + 2 x 445 MB per worker at batches of 8 x 256 tokens + 5 sessions x ${formatBytes(s)} (onnxruntime's state per weight tensor; 1 in the main process + 2 per worker) = 7.15 GB exceeds 85% of 8.00 GB available; model 80.0 MB mapped once + 1 x 445 MB per worker at batches of 8 x 256 tokens + 3 sessions x ${formatBytes(s)} (onnxruntime's state per weight tensor; 1 in the main process + 2 per worker) = 4.23 GB fits`)
    // Without sessions given: the plan as before (the sessions' part of the line absent).
    assert.match(fitPool({ ...trial, availableBytes: 8e9 }).reason, /^pool: 2 workers x 1 thread \(model 80\.0 MB mapped once \+ 2 x 445 MB per worker at batches of 8 x 256 tokens = 970 MB fits 85% of 8\.00 GB available\)$/)
  })
})
