// The memory estimate that score and eval refuse by (memoryFit.estimateWorkerBytes) must stay above
// what scoring one long sequence really takes once attention works in blocks of query rows. On the
// DeepSeek-V2-Lite config at tiny width (MLA: each pass's scores are the sum of two MatMuls, rope and
// nope parts), 8192 tokens peaked at 2.28-2.40 GB of RSS against an estimate of 2.25 GB (7000 and
// 10,000 tokens too); the Mixtral and Qwen3 configs peaked at 0.90-0.93 of theirs.
// One child process scores the sequence (the engine's own session: mapped weights, layer bodies) and
// reports its peak RSS: 8192 tokens, ~2.3 GB for ~10 s.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { REAL, tinyWidth, writeCheckpoint } from '../../bench/syntheticCheckpoint.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { attentionRows } from '../../src/onnx/sequenceChunks.ts'
import { estimateWorkerBytes, residentWeightBytes } from '../../src/pool/memoryFit.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const src = (file: string) => JSON.stringify(path.join(ROOT, 'src', file))

/** Peak RSS (bytes) of a process that scores `tokens` + 1 random ids of `model` as one sequence, one thread. */
function peakRss(model: string, tokens: number): number {
  const script = path.join(dir, 'score-one.mts')
  fs.writeFileSync(script, `
    import { openCheckpoint } from ${src('model/checkpoint.ts')}
    import { emptyEdits } from ${src('edits/variantEdits.ts')}
    import { createLocalScorer } from ${src('engine/scorer.ts')}
    const ckpt = openCheckpoint(process.argv[2], { warn: () => {} })
    const ids = Array.from({ length: Number(process.argv[3]) + 1 }, (_, i) => 1 + ((i * 7919) % (ckpt.spec.vocabSize - 1)))
    const scorer = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 1, cacheDir: process.argv[4] })
    const [r] = await scorer.score([{ prefix: ids, branches: [], scorePrefixFrom: 1 }])
    await scorer.release()
    console.log(JSON.stringify({ scored: r.prefix.length, finite: r.prefix.every(Number.isFinite), maxRss: process.resourceUsage().maxRSS * 1024 }))
  `)
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, model, String(tokens), path.join(dir, 'home')], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 })
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!)
  assert.deepEqual([out.scored, out.finite], [tokens, true])
  return out.maxRss
}

describe('memory estimate of one long sequence scored in blocks', () => {
  it('DeepSeek-V2 (MLA) at tiny width, 8192 tokens: peak RSS within the estimate', async () => {
    const model = path.join(dir, 'deepseek')
    await writeCheckpoint(model, { ...tinyWidth(REAL.deepseek!.config), num_hidden_layers: 2 }, 7)
    const ckpt = openCheckpoint(model, { warn: () => {} })
    const tokens = 8192
    assert.ok(attentionRows(1, ckpt.spec.numHeads, tokens) < tokens, 'attention works in blocks at this length')
    const estimate = residentWeightBytes(ckpt, false) + estimateWorkerBytes(ckpt.spec, 1, tokens)
    const rss = peakRss(model, tokens)
    assert.ok(rss <= estimate, `peak RSS ${(rss / 1e9).toFixed(2)} GB exceeds the estimate ${(estimate / 1e9).toFixed(2)} GB`)
  })
})
