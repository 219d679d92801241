// The report and the export agree on which failures are current, derived numbers carry no float noise,
// huge perplexities are readable, and `report` takes its title from the config. A small store written
// through the store's public write API (like golden.test.ts), the real `report` and `export` commands:
// - hc-smoe at ratio 0 failed once (a crash), and a later sweep prepared it: ratio 0 makes no edits, so
//   the later variant is the unpruned model; the failure is resolved (it stayed on the model page while
//   `export --csv` left it out);
// - frequency-pruning 0.5 was ready, then an edited method failed: a current failure (the export left it
//   out because an older variant of it was ready);
// - frequency-pruning 0.25 failed to score roll-task: a current failed cell.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { BASELINE_CONTENT_HASH } from '../../src/identity/keys.ts'
import { summarize, type LeaderboardData } from '../../src/report/leaderboardData.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { derivedNumber, readableNumber } from '../../src/util/numberFormat.ts'
import type { VariantAccounting } from '../../src/variants/accounting.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { parseCsv } from '../helpers/csv.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const MODEL = 'synthetic-model-0002'
const HUGE_PERPLEXITY = 1636649834897805.5
const accounting: VariantAccounting = {
  totalParams: 50_000, expertParams: 24_000, baseExpertParams: 24_000, baseTotalParams: 50_000, nonzeroParams: 50_000, memoryBytes: 200_000,
  activeParamsPerToken: 32_000, baseActiveParamsPerToken: 32_000, layers: [],
}

/** The next save gets a later millisecond: "which variant a sweep used last" is decided by these times. */
function tick(): void {
  const t = Date.now()
  while (Date.now() <= t + 1) { /* wait */ }
}

function buildStore(file: string): void {
  const store = new ResultsStore(file)
  try {
    store.upsertModel({ model_id: MODEL, name: 'tiny', path: '/nonexistent/tiny', architecture: 'OlmoeForCausalLM', config_json: '{}', total_params: 50_000 })
    for (const name of ['frequency-pruning', 'hc-smoe']) {
      store.saveMethodInfo({ name, family: 'expert pruning', description: name, params_json: JSON.stringify({ ratio: { type: 'number', default: 0.25, description: 'ratio' } }), reference_json: null, code_hash: 'c0de' })
    }
    const tasks = [{ name: 'mc-a', kind: 'multiple_choice', primary: 'acc' }, { name: 'mc-b', kind: 'multiple_choice', primary: 'acc' }, { name: 'roll-task', kind: 'rolling', primary: 'word_perplexity' }]
    for (const t of tasks) store.saveTaskInfo({ name: t.name, version: 1, kind: t.kind, description: t.name, metrics_json: JSON.stringify([t.primary]), primary_metric: t.primary })
    const ready = (id: string, method: string, ratio: number, hash: string) => store.saveVariant({
      variant_id: id, model_id: MODEL, method, params_json: JSON.stringify({ ratio }), ratio, achieved_ratio: ratio, content_hash: hash,
      accounting_json: JSON.stringify(accounting), report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0.1, status: 'ready', error: null,
    })
    const failed = (id: string, method: string, ratio: number, error: string) => store.saveVariant({
      variant_id: id, model_id: MODEL, method, params_json: JSON.stringify({ ratio }), ratio, achieved_ratio: null, content_hash: null,
      accounting_json: null, report_json: null, warnings_json: null, calibration_json: null, transform_seconds: null, status: 'failed', error,
    })
    const run = (hash: string, task: string, metric: string, value: number | null, higher = 1) => store.saveRun({
      model_id: MODEL, content_hash: hash, task, task_version: 1, subset: 'all', scoring_key: 'sk', harness_version: '0.0.0-test', ort_version: '0.0.0', device: 'cpu',
      status: value === null ? 'failed' : 'complete', error: value === null ? 'SCORING_FAILED: worker crashed' : null, docs: 10, seconds: 3, tokens_processed: 1000, tokens_per_choice: 0,
    }, value === null ? [] : [{ metric, value, stderr: null, higher_is_better: higher }], [])
    failed('v-hc0-crash', 'hc-smoe', 0, 'WORKER_CRASHED: the worker exited (signal SIGKILL)')
    tick()
    ready('v-fp50-old', 'frequency-pruning', 0.5, 'hash-fp50-old')
    tick()
    // Averages of these sum with float noise: (0.1 + 0.2) / 2 = 0.15000000000000002.
    ready('v-base', 'frequency-pruning', 0, BASELINE_CONTENT_HASH)
    run(BASELINE_CONTENT_HASH, 'mc-a', 'acc', 0.1)
    run(BASELINE_CONTENT_HASH, 'mc-b', 'acc', 0.2)
    run(BASELINE_CONTENT_HASH, 'roll-task', 'word_perplexity', HUGE_PERPLEXITY, 0)
    tick()
    ready('v-hc0', 'hc-smoe', 0, BASELINE_CONTENT_HASH)
    ready('v-fp25', 'frequency-pruning', 0.25, 'hash-fp25')
    run('hash-fp25', 'mc-a', 'acc', 0.7)
    run('hash-fp25', 'mc-b', 'acc', 0.5)
    run('hash-fp25', 'roll-task', 'word_perplexity', null)
    run('hash-fp50-old', 'mc-a', 'acc', 0.3)
    tick()
    failed('v-fp50', 'frequency-pruning', 0.5, 'METHOD_FAILED: NaN scores')
  } finally {
    store.close()
  }
}

const db = path.join(dir, 'results.sqlite')
buildStore(db)

function cli(args: string[], cwd = ROOT): string {
  const r = runCli(args, { cwd, env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
  assert.equal(r.status, 0, `${args.join(' ')}\n${r.stderr}`)
  return r.stdout
}

function site(out: string, extra: string[] = [], cwd = ROOT): { data: LeaderboardData; files: Map<string, string> } {
  cli(['report', '--db', db, '--out', out, ...extra], cwd)
  const files = new Map(fs.readdirSync(out).map(f => [f, fs.readFileSync(path.join(out, f), 'utf8')]))
  return { data: JSON.parse(files.get('leaderboard.json')!) as LeaderboardData, files }
}

/** The model page's "Failed variants and cells" list, one text per item. */
function failedOnPage(html: string): string[] {
  const at = html.indexOf('<h2>Failed variants and cells</h2>')
  if (at < 0) return []
  const list = html.slice(at, html.indexOf('</ul>', at))
  return [...list.matchAll(/<li>(.*?)<\/li>/g)].map(m => m[1].replace(/<[^>]+>/g, ''))
}

describe('current failures, derived numbers and readable values on the report and the export', () => {
  const { data, files } = site(path.join(dir, 'site'))
  const [model] = data.models

  it('lists a failure a later sweep completed nowhere as failed; the page and the export list the same current failures', () => {
    assert.deepEqual(model.failures.map(f => [f.method, f.params, f.task]), [
      ['frequency-pruning', '{"ratio":0.5}', null],
      ['frequency-pruning', '{"ratio":0.25}', 'roll-task'],
    ])
    const page = failedOnPage(files.get(`model-${model.slug}.html`)!)
    assert.equal(page.length, 2, page.join('\n'))
    assert.ok(!page.some(t => t.includes('hc-smoe') || t.includes('WORKER_CRASHED')), `a resolved crash is listed as failed:\n${page.join('\n')}`)
    assert.ok(page.some(t => t.includes('METHOD_FAILED')) && page.some(t => t.includes('roll-task')))

    const csvFile = path.join(dir, 'export.csv')
    cli(['export', '--db', db, '--csv', csvFile])
    const failedRows = parseCsv(fs.readFileSync(csvFile, 'utf8')).filter(r => r.status === 'failed')
    assert.deepEqual(failedRows.map(r => [r.variant_id, r.task]).sort(), [['v-fp25', 'roll-task'], ['v-fp50', '']])
    // The resolved crash is history, not a failure: the hc-smoe page lists it as superseded by the unpruned row.
    const hc = files.get('method-hc-smoe.html')!
    assert.match(hc, /data-variant="v-hc0-crash".*?<a href="run-[^"]*unpruned\.html">the current row<\/a>/s)
    assert.match(hc, /failed: WORKER_CRASHED/)
  })

  it('writes derived averages and recovery without float noise, stored metrics exactly', () => {
    const rows = parseCsv(files.get('leaderboard.csv')!)
    const base = rows.find(r => r.variant_id === 'v-base')!
    assert.equal(model.rows.find(r => r.variantId === 'v-base')!.average, (0.1 + 0.2) / 2, 'the data keeps the exact mean')
    assert.equal(base.average, '0.15')
    assert.equal(base.recovery, '100')
    const fp25 = rows.find(r => r.variant_id === 'v-fp25')!
    assert.equal(fp25['mc-a acc'], '0.7')
    assert.equal(fp25.recovery, String(derivedNumber((100 * (0.7 + 0.5)) / 2 / ((0.1 + 0.2) / 2))))
    assert.equal(fp25.recovery, '400')
    for (const r of rows) for (const k of ['average', 'recovery', 'tokens_per_second']) assert.ok(!/\d{13,}/.test(r[k]), `${k} ${r[k]} has float noise`)
    assert.equal(base['roll-task word_perplexity'], String(HUGE_PERPLEXITY), 'the CSV keeps the stored perplexity exactly')
  })

  it('shows a huge perplexity in scientific notation on the pages', () => {
    const html = files.get(`model-${model.slug}.html`)!
    assert.ok(html.includes('1.637e15'), 'scientific notation')
    // What a reader sees: the text, not attributes (data-v keeps the exact value for sorting).
    for (const page of [...files].filter(([f]) => f.endsWith('.html')).map(([f, h]) => [f, h.replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/g, '').replace(/<[^>]*>/g, ' ')])) {
      const at = page[1].search(/1,?636,?649,?834,?897,?805/)
      assert.equal(at, -1, `${page[0]} shows the 16-digit perplexity: …${page[1].slice(at - 200, at + 40)}`)
    }
    assert.equal(readableNumber(HUGE_PERPLEXITY, 4), '1.637e15')
    assert.equal(readableNumber(999_999.25, 1), '999999.3')
    assert.equal(readableNumber(-2.5e7, 3), '-2.500e7')
    assert.equal(readableNumber(0.61234, 4), '0.6123')
    assert.equal(derivedNumber(0.6000000000000001), 0.6)
    assert.equal(derivedNumber(null), null)
    assert.equal(derivedNumber(85.71428571428571), 85.7142857143)
  })

  it("takes the title from the config's report.title when --title is absent; --title wins", () => {
    const project = path.join(dir, 'project')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'harness.config.ts'), `export default ${JSON.stringify({ models: { tiny: 'model' }, report: { title: 'Config <title> board' } })}\n`)
    const fromCwd = site(path.join(dir, 'site-cwd'), [], project)
    assert.equal(fromCwd.data.title, 'Config <title> board')
    assert.match(fromCwd.files.get('index.html')!, /Config &lt;title&gt; board/)
    const fromFlag = site(path.join(dir, 'site-config'), ['--config', path.join(project, 'harness.config.ts')], dir)
    assert.equal(fromFlag.data.title, 'Config <title> board')
    assert.equal(site(path.join(dir, 'site-flag'), ['--title', 'Flag board'], project).data.title, 'Flag board')
    // No config anywhere: the config's default title.
    assert.equal(site(path.join(dir, 'site-none'), [], dir).data.title, 'MoE sparsification leaderboard')
  })
})
