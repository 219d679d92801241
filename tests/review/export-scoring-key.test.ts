// Review of 3ed2243 (leaderboard columns split by scoring key): `moe-harness export` still wrote one
// row per variant × task × metric with nothing telling a CPU float32 run from a GPU half-precision run
// (or two onnxruntime versions, or two task data files) of the same cell, so a store merged from CPU
// and GPU shards exported two rows that differ only in value. Each row must carry the run's device,
// onnxruntime version, scoring key and data file hash, and its value must be that run's.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { scoringKey } from '../../src/identity/keys.ts'
import { ResultsStore, type MetricRow, type RunRow, type SampleRow } from '../../src/store/resultsStore.ts'
import { CSV_EXPORT, JSON_EXPORT } from '../../src/cli/outputRules.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const db = path.join(dir, 'results.sqlite')
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'],
  subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
})})\n`)

describe('export under several scoring keys', () => {
  it('each exported row names the device, onnxruntime version, scoring key and data file of its run', () => {
    const r = runCli(['sweep', '--config', config, '--db', db], { env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 0, r.stderr)
    // What merging a GPU shard leaves: the same cell under the webgpu scoring key, with another value.
    const store = new ResultsStore(db)
    let cpu: RunRow, gpuId: number
    try {
      cpu = store.all<RunRow>(`SELECT * FROM runs WHERE status = 'complete'`)[0]
      const { run_id: _id, created_at: _at, ...row } = cpu
      const metrics = store.all<Omit<MetricRow, 'run_id'>>('SELECT metric, value, stderr, higher_is_better FROM metrics WHERE run_id = ?', cpu.run_id)
        .map(m => ({ ...m, value: m.value / 2 }))
      const samples = store.all<Omit<SampleRow, 'run_id'>>('SELECT doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json FROM samples WHERE run_id = ?', cpu.run_id)
      const maxLength = Number(JSON.parse(fs.readFileSync(path.join(ROOT, 'models/tiny-moe/config.json'), 'utf8')).max_position_embeddings)
      gpuId = store.saveRun({ ...row, device: 'webgpu', scoring_key: scoringKey({ maxLength, device: 'webgpu', ortVersion: row.ort_version }) }, metrics, samples)
    } finally {
      store.close()
    }
    const csv = path.join(dir, 'out.csv'), json = path.join(dir, 'out.json')
    const e = runCli(['export', '--db', db, '--csv', csv, '--json', json])
    assert.equal(e.status, 0, e.stderr)
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, unknown>[]
    const acc = rows.filter(x => x.task === 'brown-cloze' && x.metric === 'acc')
    assert.equal(acc.length, 2, JSON.stringify(rows))
    const check = new ResultsStore(db, { readonly: true })
    try {
      for (const [id, device] of [[cpu.run_id, 'cpu'], [gpuId, 'webgpu']] as const) {
        const run = check.all<RunRow>('SELECT * FROM runs WHERE run_id = ?', id)[0]
        const mine = acc.filter(x => x.device === device)
        assert.equal(mine.length, 1, `one acc row of the ${device} run: ${JSON.stringify(acc)}`)
        assert.equal(mine[0].scoring_key, run.scoring_key)
        assert.equal(mine[0].ort_version, run.ort_version)
        assert.equal(mine[0].data_sha256, run.data_sha256)
        assert.equal(mine[0].value, check.runMetric(id, 'acc')!.value, `the ${device} row holds the ${device} run's value`)
      }
    } finally {
      check.close()
    }
    assert.match(fs.readFileSync(csv, 'utf8').split('\n')[0], /,device,ort_version,scoring_key,data_sha256$/)
    // The new files are ours to replace, and so are exports written before these columns.
    assert.ok(CSV_EXPORT.isOurs(csv) && JSON_EXPORT.isOurs(json))
    const old = path.join(dir, 'old.csv')
    fs.writeFileSync(old, 'model,model_id,method,params,ratio,achieved_ratio,variant_id,task,task_version,subset,metric,value,stderr,docs,status,error\n')
    assert.ok(CSV_EXPORT.isOurs(old))
  })
})
