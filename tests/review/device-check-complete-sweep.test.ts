// Review of 586e7b9 (a device that certainly cannot run is refused before any work): the check ran
// whether or not the sweep had work for the device. A GPU sweep whose every cell is already in the
// store (results merged from the cluster's shards, then `start` or `sweep` again on a login node or a
// laptop to finish the report) scored nothing and used no device before; it must still not be refused.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { scoringKey } from '../../src/identity/keys.ts'
import { cudaProviderInstalled } from '../../src/ort/ort.ts'
import { ResultsStore, type MetricRow, type RunRow, type SampleRow } from '../../src/store/resultsStore.ts'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = path.join(ROOT, 'models/tiny-moe')
const db = path.join(dir, 'results.sqlite')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const writeConfig = (name: string, device: string) => {
  const file = path.join(dir, `${name}.config.ts`)
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
    models: { tiny: model }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-cloze'], device,
    subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  })})\n`)
  return file
}

describe('the device check of a sweep with nothing left to score', () => {
  it('a cuda sweep whose cells are all stored completes without the cuda provider; one with work is refused', { skip: cudaProviderInstalled() && 'the CUDA provider is installed here' }, () => {
    const cpu = runCli(['sweep', '--config', writeConfig('cpu', 'cpu'), '--db', db, '--json'], { env })
    assert.equal(cpu.status, 0, cpu.stderr)
    // What merging the cluster's cuda shards leaves: every cell under the cuda scoring key.
    const store = new ResultsStore(db)
    try {
      const maxLength = Number(JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')).max_position_embeddings)
      for (const run of store.all<RunRow>(`SELECT * FROM runs WHERE status = 'complete'`)) {
        const { run_id: _id, created_at: _at, ...row } = run
        const metrics = store.all<Omit<MetricRow, 'run_id'>>('SELECT metric, value, stderr, higher_is_better FROM metrics WHERE run_id = ?', run.run_id)
        const samples = store.all<Omit<SampleRow, 'run_id'>>('SELECT doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json FROM samples WHERE run_id = ?', run.run_id)
        store.saveRun({ ...row, device: 'cuda', scoring_key: scoringKey({ maxLength, device: 'cuda', ortVersion: row.ort_version }) }, metrics, samples)
      }
    } finally {
      store.close()
    }
    const cuda = writeConfig('cuda', 'cuda')
    const r = runCli(['sweep', '--config', cuda, '--db', db, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const summary = lastJson(r.stdout)
    assert.equal(summary.skipped, summary.cells, 'every cell was already complete')
    assert.equal(summary.completed, 0)
    // A cell left to score (another task) still fails at once, naming the missing provider.
    const more = path.join(dir, 'more.config.ts')
    fs.writeFileSync(more, fs.readFileSync(cuda, 'utf8').replace('"tasks":["brown-cloze"]', '"tasks":["brown-cloze","brown-agreement"]'))
    const w = runCli(['sweep', '--config', more, '--db', db], { env })
    assert.equal(w.status, 1, w.stderr)
    assert.match(w.stderr, /error \[DEVICE_UNAVAILABLE\]/)
  })
})
