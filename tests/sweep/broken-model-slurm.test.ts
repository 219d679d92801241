// `sweep --slurm` over two models, one with a NaN weight, on a real single-node Slurm: the shards run
// the same sweep as a local one, so the broken model's cells are stored failed in their shard's file
// and listed with TENSOR_NONFINITE, the good model's cells are merged complete, exit 1. Fails (does not
// skip) without Slurm, as tests/cluster/slurm.test.ts does.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { missingSlurmBinaries, startLocalSlurm, type LocalSlurm } from '../cluster/localSlurm.ts'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { poisonTensors } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'good'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 101 })
writeTinyCheckpoint(path.join(dir, 'bad'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 102 })
poisonTensors(path.join(dir, 'bad', 'model.safetensors'), ['lm_head.weight'])
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { good: 'good', bad: 'bad' }, methods: ['frequency-pruning', 'magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'],
  subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, cluster: { arraySize: 2, cpusPerTask: 1, time: '00:10:00' },
})})\n`)
const home = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('sweep --slurm with one broken model', () => {
  let slurm: LocalSlurm | undefined
  const missing = missingSlurmBinaries()
  before(() => {
    if (missing.length === 0) slurm = startLocalSlurm({ cpus: 2 })
  })
  after(() => slurm?.stop())

  it("lists the broken model's cells as failed in their shard and merges the good model's", () => {
    assert.ok(slurm, `Slurm is not installed (missing: ${missing.join(', ')}): apt-get install -y slurm-wlm munge (.ci/run does this).`)
    const db = path.join(dir, 'results.sqlite')
    const r = runCli(['sweep', '--slurm', '--config', config, '--db', db, '--poll-seconds', '0.5', '--json'], { env: { ...home, ...slurm.env } })
    assert.equal(r.status, 1, r.stderr)
    const result = lastJson(r.stdout)
    const cells = result.failed.flatMap((f: { failedCells: { cell: string; error: string }[] }) => f.failedCells)
    assert.deepEqual(cells.map((c: { cell: string }) => c.cell).sort(), ['bad frequency-pruning {"ratio":0.5} brown-cloze', 'bad magnitude-pruning {"ratio":0.5} brown-cloze'], r.stderr)
    for (const c of cells) assert.match(c.error, /^TENSOR_NONFINITE \(phase check\): model 'bad': \S+bad\/model\.safetensors: tensor 'lm_head\.weight' holds 1 NaN/)
    assert.ok(result.failed.every((f: { notRun: number }) => f.notRun === 0), JSON.stringify(result.failed))
    const s = new ResultsStore(db, { readonly: true })
    const runs = s.all<{ model: string; status: string }>('SELECT m.name AS model, r.status FROM runs r JOIN models m ON m.model_id = r.model_id ORDER BY 1')
    s.close()
    assert.deepEqual(runs.map(x => [x.model, x.status]), [['good', 'complete'], ['good', 'complete']])
  })
})
