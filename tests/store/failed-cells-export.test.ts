// Failed variants and failed cells leave a trace: export writes them (status 'failed' + error), the
// report's model page lists them; a later success supersedes a failed cell.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const db = path.join(dir, 'results.sqlite')
{
  const s = new ResultsStore(db)
  s.upsertModel({ model_id: 'mid', name: 'tiny-ds', path: '/models/tiny', architecture: 'DeepseekV3ForCausalLM', config_json: '{}', total_params: 1 })
  const ready = (id: string, hash: string, ratio: number) => s.saveVariant({
    variant_id: id, model_id: 'mid', method: 'reap', params_json: JSON.stringify({ ratio }), ratio, achieved_ratio: ratio, content_hash: hash,
    accounting_json: JSON.stringify({
      totalParams: 47_000, expertParams: 21_000, baseExpertParams: 24_000, baseTotalParams: 50_000, nonzeroParams: 47_000, memoryBytes: 188_000,
      activeParamsPerToken: 32_000, baseActiveParamsPerToken: 32_000, layers: [{ layer: 1, experts: 4, kept: [0, 1, 2], removed: [3], novices: [], groups: [] }],
    }), report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0.1, status: 'ready', error: null,
  })
  const run = (hash: string, task: string, status: 'complete' | 'failed', error: string | null, metrics: { metric: string; value: number; stderr: number | null; higher_is_better: number }[]) => s.saveRun({
    model_id: 'mid', content_hash: hash, task, task_version: 1, subset: 'all', scoring_key: `sk-${status}`, harness_version: '0', ort_version: '0', device: 'cpu',
    status, error, docs: 2, seconds: 1, tokens_processed: 10, tokens_per_choice: 0,
  }, metrics, [])
  ready('v25', 'h25', 0.25)
  run('h25', 'brown-cloze', 'complete', null, [{ metric: 'acc', value: 0.5, stderr: 0.1, higher_is_better: 1 }])
  run('h25', 'brown-perplexity', 'failed', 'NUMERIC_FAILURE (phase score): non-finite log-likelihood for document 0', [])
  s.saveVariant({
    variant_id: 'failed-v50', model_id: 'mid', method: 'reap', params_json: JSON.stringify({ ratio: 0.5 }), ratio: 0.5, achieved_ratio: null, content_hash: null,
    accounting_json: null, report_json: null, warnings_json: null, calibration_json: null, transform_seconds: null, status: 'failed',
    error: 'METHOD_INFEASIBLE (phase validate): ratio 0.5 removes 3 of 4 experts in each group',
  })
  s.close()
}

describe('failed variants and cells in export and report', () => {
  it('export CSV and JSON carry them with status and error', () => {
    const csv = path.join(dir, 'out.csv'), json = path.join(dir, 'out.json')
    const r = runCli(['export', '--db', db, '--csv', csv, '--json', json])
    assert.equal(r.status, 0, r.stderr)
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, unknown>[]
    assert.deepEqual(rows.map(x => [x.ratio, x.task, x.metric, x.value, x.status, x.error]), [
      [0.25, 'brown-cloze', 'acc', 0.5, 'complete', null],
      [0.25, 'brown-perplexity', null, null, 'failed', 'NUMERIC_FAILURE (phase score): non-finite log-likelihood for document 0'],
      [0.5, null, null, null, 'failed', 'METHOD_INFEASIBLE (phase validate): ratio 0.5 removes 3 of 4 experts in each group'],
    ])
    const lines = fs.readFileSync(csv, 'utf8').trim().split('\n')
    assert.equal(lines.length, 4)
    assert.match(lines[0]!, /,docs,status,error,device,ort_version,scoring_key,data_sha256$/)
    assert.match(lines[1]!, /,brown-cloze,1,all,acc,0\.5,0\.1,2,complete,,cpu,0,sk-complete,$/)
    assert.match(lines[2]!, /,brown-perplexity,1,all,,,,2,failed,NUMERIC_FAILURE \(phase score\): non-finite log-likelihood for document 0,cpu,0,sk-failed,$/)
    assert.match(lines[3]!, /,failed-v50,,,,,,,,failed,METHOD_INFEASIBLE \(phase validate\)/)
    // A re-export replaces its own earlier output (our columns), including one written before the error column.
    const legacy = path.join(dir, 'legacy.csv')
    fs.writeFileSync(legacy, 'model,model_id,method,params,ratio,achieved_ratio,variant_id,task,task_version,subset,metric,value,stderr,docs,status\n')
    assert.equal(runCli(['export', '--db', db, '--csv', legacy]).status, 0)
  })

  it('the report lists the failed variant and the failed cell', () => {
    const site = path.join(dir, 'site')
    const r = runCli(['report', '--db', db, '--out', site])
    assert.equal(r.status, 0, r.stderr)
    const page = fs.readdirSync(site).find(f => f.startsWith('model-'))!
    const html = fs.readFileSync(path.join(site, page), 'utf8')
    assert.match(html, /Failed variants and cells/)
    assert.match(html, /<b>reap<\/b> \{&quot;ratio&quot;:0.5\}: <span class="warn">METHOD_INFEASIBLE/)
    assert.match(html, /<b>reap<\/b> \{&quot;ratio&quot;:0.25\} on <b>brown-perplexity<\/b>: <span class="warn">NUMERIC_FAILURE/)
  })

  it('a later complete run supersedes the failed cell', () => {
    const s = new ResultsStore(db)
    s.saveRun({ model_id: 'mid', content_hash: 'h25', task: 'brown-perplexity', task_version: 1, subset: 'all', scoring_key: 'sk-complete', harness_version: '0', ort_version: '0', device: 'cpu',
      status: 'complete', error: null, docs: 2, seconds: 1, tokens_processed: 10, tokens_per_choice: 0 }, [{ metric: 'word_perplexity', value: 12, stderr: null, higher_is_better: 0 }], [])
    assert.deepEqual(s.failedRuns('mid'), [])
    s.close()
    const json = path.join(dir, 'after.json')
    assert.equal(runCli(['export', '--db', db, '--json', json]).status, 0)
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, unknown>[]
    assert.deepEqual(rows.filter(x => x.status === 'failed').map(x => x.ratio), [0.5])
  })
})
