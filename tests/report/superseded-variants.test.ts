// A method edited between two sweeps: its variant id covers the method's code, so the store holds two
// variants of one (method, parameters, ratio). Real sweeps of the tiny model through the CLI of a
// temporary copy of the project (the test edits that copy's method file, never this tree's), a real
// `report`, and every row, note and chart checked against the store: one row per (method, parameters,
// ratio), the newest variant, older ones listed on the method page with their own scores and kept out
// of averages, curves, Pareto fronts and significance; one colour per method on every chart; no chart
// drawn over one x value; the parameters' bounds; why a recovery is missing. ("Newest" is the variant a
// sweep used last; here that is the one made last. A reverted edit: tests/report/reverted-variant.test.ts.)
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import { summarize, type LeaderboardData, type Row } from '../../src/report/leaderboardData.ts'
import type { ReadyVariant } from '../../src/store/reads.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copyProject } from '../helpers/projectCopy.ts'

const dir = tmpDir()
const project = path.join(dir, 'project')
copyProject(project, ['bin', 'src', 'methods', 'tasks', 'reports', 'package.json', 'tsconfig.json'])
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 73 })
const env = { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') }
const TASKS = ['brown-cloze', 'brown-agreement']
const METHOD_FILE = path.join(project, 'methods', 'frequency-pruning.ts')

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [path.join(project, 'bin', 'moe-harness.mjs'), ...args], { cwd: dir, encoding: 'utf8', env, timeout: 300_000 })
  assert.equal(r.status, 0, `${args.join(' ')}\n${r.stderr}`)
}

function sweep(db: string, name: string, body: Record<string, unknown>): void {
  const file = path.join(dir, `${name}.config.ts`)
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(project, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({ models: { tiny: 'model' }, methods: ['frequency-pruning', 'neuron-top-k'], calibration: { sequences: 4, length: 32 }, subset: { sample: 16 }, ...body }, null, 2)})
`)
  cli(['sweep', '--config', file, '--db', db])
}

function report(db: string, out: string): { data: LeaderboardData; files: Map<string, string> } {
  cli(['report', '--db', db, '--out', out])
  const files = new Map(fs.readdirSync(out).map(f => [f, fs.readFileSync(path.join(out, f), 'utf8')]))
  return { data: JSON.parse(files.get('leaderboard.json')!) as LeaderboardData, files }
}

/** The store's ready variants of `method` at `ratio` with default parameters, oldest first, with their primary metric per task. */
function storedVariants(db: string, method: string, ratio: number): { variant: ReadyVariant; scores: Map<string, number> }[] {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const [model] = store.storedModels()
    const primary = new Map(store.storedTasks().map(t => [t.name, t.primaryMetric]))
    return store.storedVariants(model.id)
      .filter((v): v is ReadyVariant => v.status === 'ready' && v.method === method && v.ratio === ratio && v.params.score === 'count')
      .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1))
      .map(variant => ({
        variant,
        scores: new Map(store.completeRuns(model.id).filter(r => r.contentHash === variant.contentHash).map(r => [r.task, store.runMetric(r.runId, primary.get(r.task)!)!.value])),
      }))
  } finally {
    store.close()
  }
}

/** Every point mark's series (its `method:` field) and fill colour in the SVG charts of `html`. */
function pointColours(html: string): [string, string][] {
  return [...html.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="point"[^>]*fill="(#[0-9a-f]{6})"/g)]
    .map(m => [/(?:^|; )method: ([^;]*)/.exec(m[1])![1], m[2]])
}

/** The inline SVG (or the note in its place) of the chart titled `title` on `html`. */
function chart(html: string, title: string): string {
  const at = html.indexOf(`<h3>${title}</h3>`)
  assert.ok(at >= 0, `chart ${title}`)
  return html.slice(at, html.indexOf('</div>', at))
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe('one leaderboard row per method, parameters and ratio after the method is edited', () => {
  const db = path.join(dir, 'results.sqlite')
  const site = path.join(dir, 'site')
  sweep(db, 'first', { ratios: [0, 0.25, 0.5], tasks: TASKS })
  // Edited to remove the most used experts instead: another file hash, so another variant id for every
  // frequency-pruning cell (a comment alone does that too), and other edits, so other scores.
  const source = fs.readFileSync(METHOD_FILE, 'utf8')
  assert.equal(source.split("params.score === 'count' ? r.count[e]").length, 2, 'the edit applies to methods/frequency-pruning.ts')
  fs.writeFileSync(METHOD_FILE, `${source.replace("params.score === 'count' ? r.count[e]", "params.score === 'count' ? -r.count[e]")}\n// edited after the first sweep\n`)
  sweep(db, 'second', { methods: ['frequency-pruning'], ratios: [0.25], tasks: TASKS })
  // The edited code at 0.5 scored on one task only (a shard, a partial sweep): the newest variant is
  // incomplete. With a series only that task's chart shows (its colour order was per chart).
  sweep(db, 'partial', { methods: ['frequency-pruning', { method: 'frequency-pruning', params: { score: 'gate-mass' } }], ratios: [0.5], tasks: ['brown-agreement'] })
  const fp25 = storedVariants(db, 'frequency-pruning', 0.25), fp50 = storedVariants(db, 'frequency-pruning', 0.5)
  const { data, files } = report(db, site)
  const [model] = data.models
  const rowsOf = (series: string, ratio: number): Row[] => model.rows.filter(r => r.seriesLabel === series && r.ratio === ratio)

  it('the fixture exercises the bug: the store holds two variants of each edited row, the newest made later', () => {
    assert.equal(fp25.length, 2)
    assert.equal(fp50.length, 2)
    assert.notEqual(fp25[0].variant.variantId, fp25[1].variant.variantId)
    assert.ok(fp25[0].variant.createdAt < fp25[1].variant.createdAt)
    assert.notEqual(fp25[0].variant.contentHash, fp25[1].variant.contentHash)
    assert.equal(fp50[1].scores.size, 1)
  })

  it('one row per (method, parameters, ratio): the newest variant, with its own scores', () => {
    assert.equal(rowsOf('frequency-pruning', 0.25).length, 1)
    assert.equal(rowsOf('frequency-pruning', 0.5).length, 1)
    const r25 = rowsOf('frequency-pruning', 0.25)[0], r50 = rowsOf('frequency-pruning', 0.5)[0]
    assert.equal(r25.variantId, fp25[1].variant.variantId)
    assert.equal(r25.createdAt, fp25[1].variant.createdAt)
    assert.equal(r25.superseded, 1)
    assert.equal(r25.average, mean(['brown-agreement', 'brown-cloze'].map(t => fp25[1].scores.get(t)!)))
    assert.equal(r25.olderComplete, null)
    // The newest at 0.5 is what the code now produces: shown, incomplete, with a pointer to the older complete one.
    assert.equal(r50.variantId, fp50[1].variant.variantId)
    assert.deepEqual(r50.missingTasks, ['brown-cloze'])
    assert.equal(r50.average, null)
    assert.deepEqual(r50.olderComplete, { variantId: fp50[0].variant.variantId, createdAt: fp50[0].variant.createdAt, lastUsedAt: fp50[0].variant.lastUsedAt, average: mean(['brown-agreement', 'brown-cloze'].map(t => fp50[0].scores.get(t)!)) })
    // The unedited method and the unpruned model keep one row each.
    assert.deepEqual(model.rows.map(r => `${r.seriesLabel} ${r.ratio}`), ['unpruned 0', 'frequency-pruning 0.25', 'frequency-pruning 0.5', 'frequency-pruning (score=gate-mass) 0.5', 'neuron-top-k 0.25', 'neuron-top-k 0.5'])
    assert.equal(model.incompleteRows, 2)
  })

  it('the older variants are listed with their own scores and when they were made, never compared', () => {
    assert.deepEqual(model.superseded.map(s => [s.variantId, s.ratio, s.createdAt, s.supersededBy]), [
      [fp25[0].variant.variantId, 0.25, fp25[0].variant.createdAt, rowsOf('frequency-pruning', 0.25)[0].slug],
      [fp50[0].variant.variantId, 0.5, fp50[0].variant.createdAt, rowsOf('frequency-pruning', 0.5)[0].slug],
    ])
    const old25 = model.superseded[0]
    assert.equal(old25.cells['brown-cloze'].value, fp25[0].scores.get('brown-cloze'))
    assert.equal(old25.average, mean(['brown-agreement', 'brown-cloze'].map(t => fp25[0].scores.get(t)!)))
    assert.equal(old25.cells['brown-cloze'].vsBaseline, undefined)
    // Significance peers at a ratio are current rows only: the best at 0.25 is never the superseded variant.
    for (const r of model.rows) for (const c of Object.values(r.cells)) assert.ok(!c.vsBest || !c.vsBest.best.includes(old25.variantId))
  })

  it('leaderboard.csv has one line per row, the newest variant ids', () => {
    const lines = files.get('leaderboard.csv')!.trim().split('\n').slice(1)
    const fpLines = lines.filter(l => l.includes(',frequency-pruning,'))
    assert.equal(fpLines.length, 3) // 0.25, 0.5, 0.5 score=gate-mass
    assert.ok(fpLines.some(l => l.includes(fp25[1].variant.variantId)) && fpLines.some(l => l.includes(fp50[1].variant.variantId)))
    assert.ok(!lines.some(l => l.includes(fp25[0].variant.variantId) || l.includes(fp50[0].variant.variantId)))
  })

  it('the average curve has one point per ratio per series (no vertical jumps); the Pareto fronts only current rows', () => {
    const html = files.get('model-tiny.html')!
    const points = pointColours(chart(html, 'Average accuracy vs ratio')).map(([s]) => s)
    assert.equal(points.filter(s => s === 'frequency-pruning').length, 2) // ratio 0 (the unpruned anchor) and 0.25; 0.5 is incomplete
    const memory = chart(html, 'accuracy vs memory')
    assert.equal([...memory.matchAll(/aria-roledescription="point"/g)].length, model.rows.filter(r => r.average !== null).length)
  })

  it('the method page lists the superseded variants and says the incomplete row has an older complete one', () => {
    const page = files.get('method-frequency-pruning.html')!
    assert.match(page, /<details class="superseded card"><summary>Superseded variants \(2\)/)
    for (const s of model.superseded) assert.ok(page.includes(`data-variant="${s.variantId}"`))
    assert.ok(page.includes(model.superseded[0].average!.toFixed(4)))
    const html = files.get('model-tiny.html')!
    assert.match(html, /<p class="muted superseded-note">One row per method, parameters and ratio: the variant a sweep used last[^<]*2 other variant\(s\)/)
    const row50 = html.split('<tr class=').find(r => r.includes('data-method="frequency-pruning" data-ratio="0.5"'))!
    assert.match(row50, /A superseded variant of this row \(last swept [^)]*\) scored every task, average \d\.\d{4}/)
    assert.match(row50, /<span class="older-complete"/)
  })

  it('one colour per series on every chart of a page, the unpruned model included', () => {
    for (const name of ['model-tiny.html', 'index.html', 'method-frequency-pruning.html']) {
      const colours = new Map<string, Set<string>>()
      for (const [series, fill] of pointColours(files.get(name)!)) colours.set(series, (colours.get(series) ?? new Set()).add(fill))
      // The method page anchors each series at the unpruned score (no series of its own); the others draw it.
      assert.ok(colours.has('frequency-pruning') && (name.startsWith('method-') || colours.has('unpruned')), name)
      for (const [series, fills] of colours) assert.equal(fills.size, 1, `${name}: ${series} drawn in ${[...fills].join(', ')}`)
      assert.equal(new Set([...colours.values()].map(f => [...f][0])).size, colours.size, `${name}: two series share a colour`)
    }
    // And the same colour across pages.
    const across = new Map<string, Set<string>>()
    for (const name of ['model-tiny.html', 'method-frequency-pruning.html', 'method-neuron-top-k.html', 'task-brown-cloze.html']) {
      for (const [series, fill] of pointColours(files.get(name)!)) across.set(series, (across.get(series) ?? new Set()).add(fill))
    }
    for (const [series, fills] of across) assert.equal(fills.size, 1, `${series} across pages`)
  })

  it('a Pareto chart over one x value is not drawn and says why; axis numbers are short', () => {
    const html = files.get('model-tiny.html')!
    // Expert pruning keeps top-k experts per token: every complete expert-pruning row and the unpruned model compute the same.
    const active = new Set(model.rows.filter(r => r.average !== null).map(r => r.accounting.activeParamsPerToken))
    const activeChart = chart(html, 'accuracy vs active parameters per token')
    if (active.size === 1) {
      assert.ok(!activeChart.includes('<svg'))
      assert.match(activeChart, /<p class="muted chart-note">Not drawn: all \d+ rows with an average compute \d+\.\d\d M active parameters per token/)
    } else {
      assert.ok(activeChart.includes('<svg'))
    }
    for (const m of html.matchAll(/<text[^>]*>([-0-9.,]+)<\/text>/g)) assert.ok(m[1].replace(/[-,.]/g, '').length <= 5, `axis label ${m[1]}`)
  })

  it("the method page's parameters show their bounds and values as `moe-harness methods` does", () => {
    // Handlebars escapes < and = in text; a browser shows them as typed.
    const page = files.get('method-frequency-pruning.html')!.replaceAll('&lt;', '<').replaceAll('&#x3D;', '=')
    assert.ok(page.includes('<td class="text param-values">{0 <= r < 1}</td>'), 'ratio bounds')
    assert.ok(page.includes('<td class="text param-values">{count|softmax-mass|gate-mass}</td>'))
    assert.ok(page.includes('<td class="text param-values">{true|false}</td>'))
    assert.ok(!page.includes('<td class="text param-values">number</td>'))
  })

  it('a store without the unpruned model says why recovery is missing', () => {
    const db2 = path.join(dir, 'no-baseline.sqlite')
    sweep(db2, 'no-baseline', { methods: ['frequency-pruning'], ratios: [0.25], tasks: TASKS })
    const { data: d2, files: f2 } = report(db2, path.join(dir, 'site-no-baseline'))
    assert.equal(d2.models[0].baseline, null)
    assert.equal(d2.models[0].rows[0].recovery, null)
    const html = f2.get('model-tiny.html')!
    assert.ok(html.includes('<td data-v="" class="no-recovery" title="no unpruned baseline scored for this model: add ratio 0 to the sweep">–</td>'))
    assert.match(html, /<p class="muted recovery-note">Recovery: no unpruned baseline scored for this model: add ratio 0 to the sweep/)
    // And the main store's rows, which have it, do not say so.
    assert.ok(!files.get('model-tiny.html')!.includes('recovery-note'))
  })

  it('headless Chromium: the superseded section opens and shows the older scores; no console errors', async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    })
    try {
      const page = await browser.newPage()
      const errors: string[] = []
      page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
      page.on('pageerror', e => errors.push(e.message))
      await page.goto(`file://${path.join(site, 'method-frequency-pruning.html')}`)
      const rows = page.locator('details.superseded tr.superseded-row')
      assert.equal(await rows.first().isVisible(), false)
      await page.locator('details.superseded summary').click()
      assert.equal(await rows.count(), 2)
      assert.equal(await rows.first().isVisible(), true)
      const text = await rows.first().innerText()
      assert.ok(text.includes(model.superseded[0].average!.toFixed(4)), text)
      await page.goto(`file://${path.join(site, 'model-tiny.html')}`)
      assert.equal(await page.locator('table.board').first().locator('tbody tr').count(), model.rows.length)
      assert.deepEqual(errors, [])
    } finally {
      await browser.close()
    }
  })
})

describe('which variant stands for a row (store API)', () => {
  /** A store with `variants` recorded in order (each at a later millisecond), each ready one scored `score` on one accuracy task. */
  function storeWith(variants: { id: string; params: Record<string, unknown>; ratio?: number; score?: number; error?: string }[]): LeaderboardData {
    const store = new ResultsStore(path.join(tmpDir(), 'store.sqlite'))
    try {
      store.upsertModel({ model_id: 'm', name: 'm', path: '/nonexistent', architecture: 'OlmoeForCausalLM', config_json: '{}', total_params: 1 })
      store.saveMethodInfo({
        name: 'frequency-pruning', family: 'expert-pruning', description: 'd', reference_json: null, code_hash: 'c',
        params_json: JSON.stringify({ ratio: { type: 'number', default: 0.25, min: 0, max: 0.999999, description: 'r' }, score: { type: 'enum', default: 'count', values: ['count', 'gate-mass'], description: 's' }, added: { type: 'boolean', default: false, description: 'a parameter a later edit added' } }),
      })
      store.saveTaskInfo({ name: 't', version: 1, kind: 'multiple_choice', description: '', metrics_json: '["acc"]', primary_metric: 'acc' })
      for (const v of variants) {
        const ratio = v.ratio ?? 0.25
        if (v.error) {
          store.saveVariant({ variant_id: v.id, model_id: 'm', method: 'frequency-pruning', params_json: JSON.stringify({ ratio, ...v.params }), ratio, achieved_ratio: null, content_hash: null, accounting_json: null, report_json: null, warnings_json: null, calibration_json: null, transform_seconds: null, status: 'failed', error: v.error })
        } else {
          store.saveVariant({
            variant_id: v.id, model_id: 'm', method: 'frequency-pruning', params_json: JSON.stringify({ ratio, ...v.params }), ratio, achieved_ratio: ratio, content_hash: `hash-${v.id}`,
            accounting_json: JSON.stringify({ totalParams: 1, expertParams: 1, baseExpertParams: 1, baseTotalParams: 1, nonzeroParams: 1, memoryBytes: 4, activeParamsPerToken: 1, baseActiveParamsPerToken: 1, layers: [] }),
            report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0, status: 'ready', error: null,
          })
          store.saveRun({ model_id: 'm', content_hash: `hash-${v.id}`, task: 't', task_version: 1, subset: 'all', scoring_key: 'sk', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 4, seconds: 1, tokens_processed: 10, tokens_per_choice: 0 },
            [{ metric: 'acc', value: v.score ?? 0.5, stderr: null, higher_is_better: 1 }], [])
        }
        const at = Date.now()
        while (Date.now() <= at + 1) { /* the next variant is recorded at a later millisecond */ }
      }
      return summarize(store, 'x')
    } finally {
      store.close()
    }
  }

  it('a parameter a later edit added, at its default, does not split the row; a non-default value is its own row', () => {
    const [m] = storeWith([{ id: 'old', params: { score: 'count' }, score: 0.5 }, { id: 'new', params: { score: 'count', added: false }, score: 0.75 }, { id: 'other', params: { score: 'gate-mass', added: false }, score: 0.25 }]).models
    assert.deepEqual(m.rows.map(r => [r.variantId, r.seriesLabel, r.average, r.superseded]), [['new', 'frequency-pruning', 0.75, 1], ['other', 'frequency-pruning (score=gate-mass)', 0.25, 0]])
    assert.deepEqual(m.superseded.map(s => [s.variantId, s.average, s.supersededBy]), [['old', 0.5, m.rows[0].slug]])
  })

  it('when the newest variant failed, it is the failure shown; the older result is superseded, not current', () => {
    const [m] = storeWith([{ id: 'old', params: {}, score: 0.5 }, { id: 'failed-1', params: {}, error: 'METHOD_FAILED: NaN scores' }]).models
    assert.deepEqual(m.rows, [])
    assert.deepEqual(m.failures.map(f => f.error), ['METHOD_FAILED: NaN scores'])
    assert.deepEqual(m.superseded.map(s => [s.variantId, s.status, s.supersededBy, s.average]), [['old', 'ready', '', 0.5]])
  })

  it('an older failure of a row that now succeeds is superseded, not listed as failing', () => {
    const [m] = storeWith([{ id: 'failed-1', params: {}, error: 'METHOD_FAILED: NaN scores' }, { id: 'new', params: {}, score: 0.5 }]).models
    assert.deepEqual(m.rows.map(r => r.variantId), ['new'])
    assert.deepEqual(m.failures, [])
    assert.deepEqual(m.superseded.map(s => [s.variantId, s.status, s.error]), [['failed-1', 'failed', 'METHOD_FAILED: NaN scores']])
  })
})
