// Leaderboards compare like with like: a store where some variants lack some tasks (a Slurm shard, a
// partial sweep, failed cells) or were scored on other documents. Real sweeps of the tiny model through
// the CLI, a real `report`, and every aggregate checked against the store's own per-task values:
// averages only over all accuracy tasks, recovery from the same tasks of the row and the unpruned
// model, incomplete rows marked in the HTML and the CSV, left out of the average curves and ranked last.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import type { Row } from '../../src/report/leaderboardData.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { derivedNumber } from '../../src/util/numberFormat.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { parseCsv } from '../helpers/csv.ts'
import { reportSite } from '../helpers/site.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 71 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const ALL = ['brown-cloze', 'brown-agreement', 'brown-perplexity']

function config(name: string, body: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.config.ts`)
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({ models: { tiny: 'model' }, calibration: { sequences: 4, length: 32 }, ...body }, null, 2)})
`)
  return file
}

function sweep(db: string, body: Record<string, unknown>, name: string): void {
  const r = runCli(['sweep', '--config', config(name, body), '--db', db], { env })
  assert.equal(r.status, 0, r.stderr)
}

const report = reportSite

/** Per variant method (the unpruned model as 'unpruned'), task → primary metric value, read from the store's own runs. */
function storedScores(db: string): Map<string, Map<string, number>> {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const [model] = store.storedModels()
    const tasks = new Map(store.storedTasks().map(t => [t.name, t]))
    const out = new Map<string, Map<string, number>>()
    for (const v of store.storedVariants(model.id)) {
      if (v.status !== 'ready') continue
      const scores = new Map<string, number>()
      for (const run of store.completeRuns(model.id).filter(r => r.contentHash === v.contentHash)) {
        scores.set(run.task, store.runMetric(run.runId, tasks.get(run.task)!.primaryMetric)!.value)
      }
      out.set(v.ratio === 0 ? 'unpruned' : `${v.method}@${v.ratio}`, scores)
    }
    return out
  } finally {
    store.close()
  }
}


/** The <tr> of the leaderboard table on `html` whose method cell is `method` and ratio `ratio`. */
function tableRow(html: string, method: string, ratio: number): string {
  const rows = html.split('<tr class=').filter(r => r.includes(`data-method="${method}" data-ratio="${ratio}"`))
  assert.equal(rows.length, 1, `one leaderboard row ${method} r=${ratio}`)
  return rows[0].slice(0, rows[0].indexOf('</tr>'))
}

/** The inline SVG of the chart titled `title` on `html`. */
function chart(html: string, title: string): string {
  const at = html.indexOf(`<h3>${title}</h3>`)
  assert.ok(at >= 0, `chart ${title}`)
  return html.slice(at, html.indexOf('</svg>', at))
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe('leaderboard rows over different task sets', () => {
  const db = path.join(dir, 'results.sqlite')
  const site = path.join(dir, 'site')
  // Unpruned and frequency-pruning 0.25 on every task; neuron-top-k 0.5 on brown-agreement only
  // (what a shard, or a sweep whose other cells failed, leaves in a store).
  sweep(db, { methods: ['frequency-pruning'], ratios: [0, 0.25], tasks: ALL, subset: { sample: 20 } }, 'full')
  sweep(db, { methods: ['neuron-top-k'], ratios: [0.5], tasks: ['brown-agreement'], subset: { sample: 20 } }, 'partial')
  const scores = storedScores(db)
  const base = scores.get('unpruned')!, fp = scores.get('frequency-pruning@0.25')!, nt = scores.get('neuron-top-k@0.5')!
  const { data, files } = report(db, site)
  const [model] = data.models
  const row = (method: string, ratio: number): Row => model.rows.find(r => r.method === method && r.ratio === ratio)!

  it('the fixture exercises the bug: the partial row was scored on fewer tasks, on which the unpruned model scores above its average', () => {
    assert.deepEqual([...nt.keys()], ['brown-agreement'])
    assert.equal(fp.size, 3)
    // The old report divided nt's brown-agreement by the unpruned average over brown-agreement and brown-cloze.
    assert.notEqual(base.get('brown-agreement'), mean([base.get('brown-agreement')!, base.get('brown-cloze')!]))
  })

  it('averages cover all accuracy tasks; recovery divides means over the same tasks', () => {
    assert.deepEqual(model.averageTasks, ['brown-agreement', 'brown-cloze'])
    assert.equal(model.incompleteRows, 1)
    const b = row('unpruned', 0), f = row('frequency-pruning', 0.25), n = row('neuron-top-k', 0.5)
    const baseAvg = mean([base.get('brown-agreement')!, base.get('brown-cloze')!])
    const fpAvg = mean([fp.get('brown-agreement')!, fp.get('brown-cloze')!])
    assert.equal(b.average, baseAvg)
    assert.equal(f.average, fpAvg)
    assert.deepEqual([b.missingTasks, f.missingTasks], [[], []])
    assert.equal(f.recovery, (100 * fpAvg) / baseAvg)
    assert.deepEqual(f.recoveryTasks, model.averageTasks)
    // The incomplete row: no average, recovery from brown-agreement of both rows only.
    assert.equal(n.average, null)
    assert.deepEqual(n.missingTasks, ['brown-cloze'])
    assert.equal(n.recovery, (100 * nt.get('brown-agreement')!) / base.get('brown-agreement')!)
    assert.deepEqual(n.recoveryTasks, ['brown-agreement'])
    assert.notEqual(n.recovery, (100 * nt.get('brown-agreement')!) / baseAvg)
  })

  it('the HTML marks the incomplete row, keeps it out of the average curve and the Pareto fronts, and explains why', () => {
    const html = files.get('model-tiny.html')!
    const partial = tableRow(html, 'neuron-top-k', 0.5)
    assert.match(partial, /<td data-v="" class="incomplete" title="scored 1\/2 accuracy tasks, missing brown-cloze: [^"]*">incomplete<span class="pm"> 1\/2<\/span><\/td>/)
    const rec = (100 * nt.get('brown-agreement')!) / base.get('brown-agreement')!
    assert.ok(partial.includes(`title="over brown-agreement only (1 of 2 accuracy tasks: those this row and the unpruned model both scored); compares with the unpruned model, not with other rows">${rec.toFixed(1)}%<sup>†</sup></td>`), partial)
    const complete = tableRow(html, 'frequency-pruning', 0.25)
    assert.ok(complete.includes(`<td data-v="${row('frequency-pruning', 0.25).average}">${row('frequency-pruning', 0.25).average!.toFixed(4)}</td>`), complete)
    assert.ok(!complete.includes('incomplete'))
    assert.match(html, /<p class="muted incomplete-note"><span class="incomplete">incomplete<\/span>: 1 row\(s\) lack a score for some of the 2 accuracy tasks \(brown-agreement, brown-cloze\)/)
    assert.match(html, /Merge the shards or rerun the sweep to complete the rows\.<\/p>/)
    for (const title of ['Average accuracy vs ratio', 'accuracy vs memory']) {
      const svg = chart(html, title)
      assert.ok(svg.includes('frequency-pruning'), `${title} draws the complete rows`)
      assert.ok(!svg.includes('neuron-top-k'), `${title} leaves the incomplete row out`)
    }
    // Expert pruning leaves the active parameters per token alone: the two complete rows share one x, so no chart, a note
    // (the incomplete neuron-top-k row, which does change it, would have made one).
    assert.match(html, /<h3>accuracy vs active parameters per token<\/h3><p class="muted chart-note">Not drawn: all 2 rows with an average compute \d+\.\d\d M active parameters per token/)
    // Its brown-agreement score is still drawn where it compares: that task's curve.
    assert.ok(chart(html, '<a href="task-brown-agreement.html">brown-agreement</a>: acc vs ratio').includes('neuron-top-k'))
    assert.match(files.get('index.html')!, /1 incomplete/)
    assert.match(files.get('run-tiny-neuron-top-k-0-5.html')!, /<span class="incomplete">incomplete<\/span> \(1\/2 accuracy tasks, missing brown-cloze\): no average \(\d+\.\d% of unpruned over brown-agreement only\)/)
  })

  it('the CSV says which tasks each average and recovery cover', () => {
    const csv = parseCsv(files.get('leaderboard.csv')!)
    assert.equal(csv.length, 3)
    const byMethod = new Map(csv.map(r => [r.method, r]))
    const n = byMethod.get('neuron-top-k')!, f = byMethod.get('frequency-pruning')!, b = byMethod.get('unpruned')!
    assert.deepEqual([n.status, n.tasks_scored, n.missing_tasks, n.average, n.average_tasks, n.recovery_tasks], ['incomplete', '1 of 2', 'brown-cloze', '', '', 'brown-agreement'])
    // Derived numbers to 12 significant digits (no float noise from summing); stored metrics exactly.
    assert.equal(Number(n.recovery), derivedNumber(row('neuron-top-k', 0.5).recovery))
    assert.equal(Number(n['brown-agreement acc']), nt.get('brown-agreement'))
    assert.equal(n['brown-cloze acc'], '')
    for (const [r, method, ratio] of [[f, 'frequency-pruning', 0.25], [b, 'unpruned', 0]] as const) {
      assert.deepEqual([r.status, r.tasks_scored, r.missing_tasks, r.average_tasks, r.recovery_tasks], ['complete', '2 of 2', '', 'brown-agreement;brown-cloze', 'brown-agreement;brown-cloze'])
      assert.equal(Number(r.average), derivedNumber(row(method, ratio).average))
      assert.equal(Number(r.recovery), derivedNumber(row(method, ratio).recovery))
    }
  })

  it('sorting ranks the incomplete row last in both directions (headless Chromium)', async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    })
    try {
      const page = await browser.newPage()
      await page.goto(`file://${path.join(site, 'model-tiny.html')}`)
      const table = page.locator('table.board').first()
      const headers = (await table.locator('thead th').allTextContents()).map(t => t.trim())
      for (const name of ['average', 'recovery']) {
        const th = table.locator('thead th').nth(headers.indexOf(name))
        for (const _ of ['descending', 'ascending']) {
          await th.click()
          const methods = (await table.locator('tbody tr td:first-child').allTextContents()).map(t => t.trim())
          assert.equal(methods.at(-1), 'neuron-top-k', `${name}: ${methods.join(', ')}`)
        }
      }
    } finally {
      await browser.close()
    }
  })

  it('scores on another document subset are another column: never averaged, paired or compared with the first', () => {
    const db2 = path.join(dir, 'subsets.sqlite')
    fs.copyFileSync(db, db2)
    sweep(db2, { methods: ['neuron-top-k'], ratios: [0.5], tasks: ['brown-agreement'], subset: { sample: 10 } }, 'other-subset')
    const { data: d, files: f } = report(db2, path.join(dir, 'site-subsets'))
    const [m] = d.models
    const a20 = m.tasks.find(t => t.name === 'brown-agreement' && t.subset.startsWith('sample:20'))!
    const a10 = m.tasks.find(t => t.name === 'brown-agreement' && t.subset.startsWith('sample:10'))!
    assert.equal(a20.key, `brown-agreement [${a20.subset}]`)
    assert.equal(a10.key, `brown-agreement [${a10.subset}]`)
    assert.deepEqual(m.averageTasks, [a10.key, a20.key, 'brown-cloze'])
    const n = m.rows.find(r => r.method === 'neuron-top-k')!, b = m.rows.find(r => r.isBaseline)!
    assert.equal(n.cells[a10.key].docs, 10)
    assert.equal(n.cells[a20.key].docs, 20)
    assert.equal(n.cells[a10.key].vsBaseline, undefined, 'no paired test against the unpruned model on other documents')
    assert.match(n.cells[a20.key].vsBaseline?.detail ?? '', /n=20$/)
    // Nobody has every column: no averages; recovery only over the subset both scored.
    assert.deepEqual(m.rows.map(r => r.average), [null, null, null])
    assert.deepEqual(n.recoveryTasks, [a20.key])
    assert.equal(n.recovery, (100 * n.cells[a20.key].value) / b.cells[a20.key].value)
    assert.ok(f.has(`task-${a10.slug}.html`) && f.has(`task-${a20.slug}.html`) && a10.slug !== a20.slug)
    assert.ok(f.get('model-tiny.html')!.includes(`>brown-agreement [${a10.subset}]<br>`))
    // Rerunning a sweep cannot complete these rows: the note says why and what does (not "rerun the sweep").
    const note = /<p class="muted incomplete-note">(.*?)<\/p>/s.exec(f.get('model-tiny.html')!)![1]!
    assert.match(note, /The store holds brown-agreement under several task versions, document subsets or data files \(one column each\): a row scored under one lacks the others, so rerunning a sweep does not complete it; score every variant with the same <code>subset<\/code>/)
    assert.ok(!note.includes('Merge the shards'), note)
  })

  it('scores on another task data file are another column too', () => {
    // A store where neuron-top-k's brown-agreement was also scored on another revision of the data
    // file (what merging a shard run against other data leaves): its run re-saved under another sha256.
    const db3 = path.join(dir, 'data-files.sqlite')
    fs.copyFileSync(db, db3)
    const store = new ResultsStore(db3)
    let realSha = ''
    try {
      const [m] = store.storedModels()
      const ntVariant = store.storedVariants(m.id).find(v => v.method === 'neuron-top-k')!
      assert.ok(ntVariant.status === 'ready')
      const run = store.completeRuns(m.id).find(r => r.contentHash === ntVariant.contentHash && r.task === 'brown-agreement')!
      realSha = run.dataSha256
      assert.match(realSha, /^[0-9a-f]{64}$/)
      const { run_id: _id, created_at: _at, ...row } = store.all<import('../../src/store/resultsStore.ts').RunRow>('SELECT * FROM runs WHERE run_id = ?', run.runId)[0]
      const metrics = store.all<{ metric: string; value: number; stderr: number | null; higher_is_better: number }>('SELECT metric, value, stderr, higher_is_better FROM metrics WHERE run_id = ?', run.runId)
      const samples = store.all<Omit<import('../../src/store/resultsStore.ts').SampleRow, 'run_id'>>('SELECT doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json FROM samples WHERE run_id = ?', run.runId)
      store.saveRun({ ...row, data_sha256: 'f'.repeat(64), data_file: '/elsewhere/brown-agreement.jsonl' }, metrics, samples)
    } finally {
      store.close()
    }
    const { data: d } = report(db3, path.join(dir, 'site-data-files'))
    const [m] = d.models
    const real = `brown-agreement [data ${realSha.slice(0, 8)}]`, other = 'brown-agreement [data ffffffff]'
    assert.deepEqual(m.averageTasks, [real, other, 'brown-cloze'])
    const n = m.rows.find(r => r.method === 'neuron-top-k')!
    assert.deepEqual(Object.keys(n.cells).sort(), [real, other])
    assert.equal(n.cells[other].vsBaseline, undefined, 'no paired test against the unpruned model on other data')
    assert.ok(n.cells[real].vsBaseline)
    assert.deepEqual(m.rows.map(r => r.average), [null, null, null])
    assert.deepEqual(n.recoveryTasks, [real])
  })
})
