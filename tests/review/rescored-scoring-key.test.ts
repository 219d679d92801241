// Review of 3ed2243 (leaderboard columns split by scoring key): a cell scored again on the same device
// and onnxruntime version under a new scoring key (a SCORING_VERSION bump re-scores every cell) kept
// its superseded score as a column of its own, "[scoring 1a2b3c4d]". Averages then covered the stale
// column, and a variant prepared after the bump could never fill it (the old scoring code is gone), so
// its average stayed null for good. Before the split the latest run of a cell stood; a re-scored cell
// must show only its latest score, while other devices still get columns of their own.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { scoringKey } from '../../src/identity/keys.ts'
import { summarize } from '../../src/report/leaderboardData.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { tmpDir } from '../helpers/tmp.ts'

const db = path.join(tmpDir(), 'results.sqlite')
/** What keys.ts scoringKey gave under the previous SCORING_VERSION (any other key of the same device and onnxruntime). */
const OLD_KEY = 'f00dfeedf00dfeed'
const NEW_KEY = scoringKey({ maxLength: 128, device: 'cpu', ortVersion: '1.30.0' })
const GPU_KEY = scoringKey({ maxLength: 128, device: 'webgpu', ortVersion: '1.30.0' })

{
  const s = new ResultsStore(db)
  s.upsertModel({ model_id: 'mid', name: 'tiny', path: '/models/tiny', architecture: 'OlmoeForCausalLM', config_json: '{}', total_params: 1 })
  s.saveTaskInfo({ name: 'brown-cloze', version: 1, kind: 'multiple_choice', description: '', metrics_json: '["acc"]', primary_metric: 'acc' })
  const variant = (id: string, hash: string, ratio: number) => s.saveVariant({
    variant_id: id, model_id: 'mid', method: 'frequency-pruning', params_json: JSON.stringify({ ratio }), ratio, achieved_ratio: ratio, content_hash: hash,
    accounting_json: null, report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0, status: 'ready', error: null,
  })
  const run = (hash: string, key: string, device: string, acc: number) => s.saveRun({
    model_id: 'mid', content_hash: hash, task: 'brown-cloze', task_version: 1, subset: 'all', scoring_key: key, harness_version: '0', ort_version: '1.30.0', device,
    status: 'complete', error: null, docs: 4, seconds: 1, tokens_processed: 10, tokens_per_choice: 0,
  }, [{ metric: 'acc', value: acc, stderr: 0.1, higher_is_better: 1 }], [])
  variant('va', 'ha', 0.25)
  variant('vb', 'hb', 0.5)
  run('ha', OLD_KEY, 'cpu', 0.25) // scored before the bump
  run('ha', NEW_KEY, 'cpu', 0.5) // the same cell, re-scored after it
  run('hb', NEW_KEY, 'cpu', 0.75) // a variant prepared after the bump
  s.close()
}

describe('a cell re-scored under a new scoring key', () => {
  it('shows its latest score in one column, and every row averages over it', () => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      const [model] = summarize(store, 't').models
      assert.deepEqual(model.tasks.map(t => t.key), ['brown-cloze'], 'no column of superseded scores')
      const cells = Object.fromEntries(model.rows.map(r => [r.ratio, r.cells['brown-cloze']?.value]))
      assert.deepEqual(cells, { 0.25: 0.5, 0.5: 0.75 })
      assert.deepEqual(model.rows.map(r => r.average), [0.5, 0.75], 'both rows complete')
    } finally {
      store.close()
    }
  })

  it('a run on another device is still a column of its own', () => {
    const s = new ResultsStore(db)
    s.saveRun({
      model_id: 'mid', content_hash: 'ha', task: 'brown-cloze', task_version: 1, subset: 'all', scoring_key: GPU_KEY, harness_version: '0', ort_version: '1.30.0', device: 'webgpu',
      status: 'complete', error: null, docs: 4, seconds: 1, tokens_processed: 10, tokens_per_choice: 0,
    }, [{ metric: 'acc', value: 1, stderr: 0.1, higher_is_better: 1 }], [])
    s.close()
    const store = new ResultsStore(db, { readonly: true })
    try {
      const [model] = summarize(store, 't').models
      assert.deepEqual(model.tasks.map(t => t.key), ['brown-cloze [cpu]', 'brown-cloze [webgpu]'])
      const va = model.rows.find(r => r.ratio === 0.25)!
      assert.equal(va.cells['brown-cloze [cpu]'].value, 0.5)
      assert.equal(va.cells['brown-cloze [webgpu]'].value, 1)
    } finally {
      store.close()
    }
  })
})
