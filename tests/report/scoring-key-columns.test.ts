// Leaderboard columns never mix scoring keys: a CPU (float32) and a GPU (half precision) shard of one
// task, or runs from two onnxruntime versions, are different measurements. A real CPU sweep of the
// tiny model through the CLI, then runs re-saved through the store's API under other scoring keys
// (what merging a GPU shard leaves: the same run row with another device, onnxruntime version and
// keys.ts scoringKey; its metrics and samples are another variant's real ones, so values differ and
// stay consistent). Every aggregate is checked against the store's own per-run values.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import { scoringKey } from '../../src/identity/keys.ts'
import type { LeaderboardData, TaskInfo } from '../../src/report/leaderboardData.ts'
import { compareCorrectness } from '../../src/report/significance.ts'
import { ResultsStore, type MetricRow, type RunRow, type SampleRow } from '../../src/store/resultsStore.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { parseCsv } from '../helpers/csv.ts'
import { reportSite } from '../helpers/site.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 11 })
const MAX_LENGTH = (JSON.parse(fs.readFileSync(path.join(dir, 'model', 'config.json'), 'utf8')) as { max_position_embeddings: number }).max_position_embeddings
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
/** The task scored on several devices, and one scored on the CPU only. */
const SPLIT = 'brown-agreement', OTHER = 'brown-cloze'

function sweep(db: string, body: Record<string, unknown>, name: string): void {
  const file = path.join(dir, `${name}.config.ts`)
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({ models: { tiny: 'model' }, calibration: { sequences: 4, length: 32 }, subset: { sample: 20 }, ...body }, null, 2)})
`)
  const r = runCli(['sweep', '--config', file, '--db', db], { env })
  assert.equal(r.status, 0, r.stderr)
}

const report = reportSite


const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
/** Column keys in the leaderboard's order (by key). */
const sorted = (...keys: string[]) => keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

/** The content hash of a ready variant by `method@ratio` ('unpruned' for ratio 0). */
function contentHashes(db: string): Map<string, string> {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const [m] = store.storedModels()
    return new Map(store.storedVariants(m.id).flatMap(v => (v.status === 'ready' ? [[v.ratio === 0 ? 'unpruned' : `${v.method}@${v.ratio}`, v.contentHash] as const] : [])))
  } finally {
    store.close()
  }
}

/**
 * Saves a copy of the sweep's (first) cpu `task` run of content `from` (its metrics and samples) as a run of
 * content `to`, scored under `device` / `ortVersion` (and max length `maxLength`): its own scoring
 * key, as the sweep computes it. Returns the new run id.
 */
function resave(db: string, task: string, from: string, to: string, scoring: { device: string; ortVersion?: string; maxLength?: number }): number {
  const store = new ResultsStore(db)
  try {
    const [m] = store.storedModels()
    const src = store.completeRuns(m.id).find(r => r.contentHash === from && r.task === task && r.device === 'cpu')!
    const { run_id: _id, created_at: _at, ...row } = store.all<RunRow>('SELECT * FROM runs WHERE run_id = ?', src.runId)[0]
    const metrics = store.all<Omit<MetricRow, 'run_id'>>('SELECT metric, value, stderr, higher_is_better FROM metrics WHERE run_id = ?', src.runId)
    const samples = store.all<Omit<SampleRow, 'run_id'>>('SELECT doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json FROM samples WHERE run_id = ?', src.runId)
    const ortVersion = scoring.ortVersion ?? row.ort_version
    const key = scoringKey({ maxLength: scoring.maxLength ?? MAX_LENGTH, device: scoring.device, ortVersion })
    return store.saveRun({ ...row, content_hash: to, scoring_key: key, device: scoring.device, ort_version: ortVersion }, metrics, samples)
  } finally {
    store.close()
  }
}

/** Primary metric (acc) value and per-document correctness of a run, read from the store. */
function runValues(db: string, runId: number): { acc: number; correct: number[] } {
  const store = new ResultsStore(db, { readonly: true })
  try {
    return { acc: store.runMetric(runId, 'acc')!.value, correct: store.sampleCorrectness(runId, 'multiple_choice', 'acc')! }
  } finally {
    store.close()
  }
}

/** The complete cpu run id of `task` for content `hash` (the sweep's: the first). */
function cpuRun(db: string, task: string, hash: string): number {
  const store = new ResultsStore(db, { readonly: true })
  try {
    const [m] = store.storedModels()
    return store.completeRuns(m.id).find(r => r.contentHash === hash && r.task === task && r.device === 'cpu')!.runId
  } finally {
    store.close()
  }
}

describe('leaderboard columns split by device', () => {
  const db = path.join(dir, 'results.sqlite')
  // CPU: the unpruned model and frequency-pruning 0.5 on both tasks; neuron-top-k 0.5 on brown-cloze only.
  sweep(db, { methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: [SPLIT, OTHER] }, 'cpu-full')
  sweep(db, { methods: ['neuron-top-k'], ratios: [0.5], tasks: [OTHER] }, 'cpu-partial')
  const hash = contentHashes(db)
  const single = report(db, path.join(dir, 'site-single'))
  const ort = (() => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      const [m] = store.storedModels()
      const runs = store.completeRuns(m.id)
      // The sweep's key is the one this test recomputes for the other devices.
      for (const r of runs) assert.equal(r.scoringKey, scoringKey({ maxLength: MAX_LENGTH, device: 'cpu', ortVersion: r.ortVersion }))
      return runs[0].ortVersion
    } finally {
      store.close()
    }
  })()

  // The GPU shard: brown-agreement of neuron-top-k and frequency-pruning scored on webgpu (values
  // borrowed from the CPU runs of frequency-pruning and the unpruned model); the unpruned model never.
  const webgpu = path.join(dir, 'webgpu.sqlite')
  fs.copyFileSync(db, webgpu)
  const ntGpu = resave(webgpu, SPLIT, hash.get('frequency-pruning@0.5')!, hash.get('neuron-top-k@0.5')!, { device: 'webgpu' })
  const fpGpu = resave(webgpu, SPLIT, hash.get('unpruned')!, hash.get('frequency-pruning@0.5')!, { device: 'webgpu' })
  const split = report(webgpu, path.join(dir, 'site-webgpu'))
  const CPU_COL = `${SPLIT} [cpu]`, GPU_COL = `${SPLIT} [webgpu]`

  it('the fixture exercises the bug: the webgpu scores differ from the cpu scores one column would have mixed them with', () => {
    const baseSplit = runValues(webgpu, cpuRun(webgpu, SPLIT, hash.get('unpruned')!)).acc
    const fpSplit = runValues(webgpu, cpuRun(webgpu, SPLIT, hash.get('frequency-pruning@0.5')!)).acc
    // One column held neuron-top-k's webgpu score beside (and paired with) the unpruned model's cpu one,
    // and two runs of frequency-pruning under one key ("latest wins": the webgpu one).
    assert.notEqual(runValues(webgpu, ntGpu).acc, baseSplit)
    assert.notEqual(runValues(webgpu, fpGpu).acc, fpSplit)
  })

  it('one scoring key in the store: bare task names, no scoring field, no split note', () => {
    const [m] = single.data.models
    assert.deepEqual(m.tasks.map(t => t.key), sorted(OTHER, SPLIT))
    assert.ok(m.tasks.every(t => !('scoring' in t)))
    assert.ok(!single.files.get('model-tiny.html')!.includes('scoring-note'))
    assert.ok(!single.files.get('leaderboard.json')!.includes('"scoring"'))
    assert.deepEqual(Object.keys(parseCsv(single.files.get('leaderboard.csv')!)[0]).filter(k => k.startsWith('brown')), sorted(`${OTHER} acc`, `${SPLIT} acc`))
  })

  it('two devices for one task: two columns labelled by device, with the scoring key and precision', () => {
    const [m] = split.data.models
    assert.deepEqual(m.tasks.map(t => t.key), sorted(OTHER, CPU_COL, GPU_COL))
    assert.deepEqual(m.averageTasks, sorted(OTHER, CPU_COL, GPU_COL))
    const col = (key: string) => m.tasks.find(t => t.key === key)!
    assert.deepEqual(col(CPU_COL).scoring, { key: scoringKey({ maxLength: MAX_LENGTH, device: 'cpu', ortVersion: ort }), device: 'cpu', precision: 'float32', ortVersion: ort, label: 'cpu' })
    assert.deepEqual(col(GPU_COL).scoring, { key: scoringKey({ maxLength: MAX_LENGTH, device: 'webgpu', ortVersion: ort }), device: 'webgpu', precision: 'float16', ortVersion: ort, label: 'webgpu' })
    // brown-cloze has one scoring key: its column is unchanged.
    assert.equal(col(OTHER).scoring, undefined)
    assert.notEqual(col(CPU_COL).slug, col(GPU_COL).slug)
  })

  it('cells, averages and recovery pair only within a column', () => {
    const [m] = split.data.models
    const row = (method: string) => m.rows.find(r => r.method === method)!
    const base = row('unpruned'), fp = row('frequency-pruning'), nt = row('neuron-top-k')
    const v = (runId: number) => runValues(webgpu, runId).acc
    const baseSplit = v(cpuRun(webgpu, SPLIT, hash.get('unpruned')!)), baseOther = v(cpuRun(webgpu, OTHER, hash.get('unpruned')!))
    const fpSplit = v(cpuRun(webgpu, SPLIT, hash.get('frequency-pruning@0.5')!)), fpOther = v(cpuRun(webgpu, OTHER, hash.get('frequency-pruning@0.5')!))
    const ntOther = v(cpuRun(webgpu, OTHER, hash.get('neuron-top-k@0.5')!))
    // Each cell holds its own column's run.
    assert.deepEqual(Object.keys(nt.cells).sort(), sorted(OTHER, GPU_COL))
    assert.equal(nt.cells[GPU_COL].value, v(ntGpu))
    assert.deepEqual([fp.cells[CPU_COL].value, fp.cells[GPU_COL].value, fp.cells[OTHER].value], [fpSplit, v(fpGpu), fpOther])
    assert.deepEqual(Object.keys(base.cells).sort(), sorted(OTHER, CPU_COL))
    // The unpruned model has no webgpu score: incomplete, as is neuron-top-k (no cpu brown-agreement).
    assert.deepEqual([base.missingTasks, fp.missingTasks, nt.missingTasks], [[GPU_COL], [], [CPU_COL]])
    assert.deepEqual([base.average, nt.average], [null, null])
    assert.equal(fp.average, mean([fpSplit, v(fpGpu), fpOther]))
    assert.equal(m.incompleteRows, 2)
    // neuron-top-k's webgpu brown-agreement is never divided by the unpruned model's cpu one.
    assert.deepEqual(nt.recoveryTasks, [OTHER])
    assert.equal(nt.recovery, (100 * ntOther) / baseOther)
    assert.deepEqual(fp.recoveryTasks, sorted(OTHER, CPU_COL))
    assert.equal(fp.recovery, (100 * mean([fpSplit, fpOther])) / mean([baseSplit, baseOther]))
  })

  it('paired significance: against the unpruned model only on the cpu column, best-at-ratio only within the webgpu column', () => {
    const [m] = split.data.models
    const row = (method: string) => m.rows.find(r => r.method === method)!
    const fp = row('frequency-pruning'), nt = row('neuron-top-k')
    assert.equal(nt.cells[GPU_COL].vsBaseline, undefined, 'no test against the unpruned model scored on another device')
    assert.equal(fp.cells[GPU_COL].vsBaseline, undefined)
    const fpCpu = runValues(webgpu, cpuRun(webgpu, SPLIT, hash.get('frequency-pruning@0.5')!)).correct
    const baseCpu = runValues(webgpu, cpuRun(webgpu, SPLIT, hash.get('unpruned')!)).correct
    assert.deepEqual(fp.cells[CPU_COL].vsBaseline, compareCorrectness(fpCpu, baseCpu))
    // Both rows at ratio 0.5 have a webgpu cell: the lower one is compared with the higher on webgpu runs.
    const ntC = runValues(webgpu, ntGpu).correct, fpC = runValues(webgpu, fpGpu).correct
    const [worse, better, worseC, betterC] = nt.cells[GPU_COL].value > fp.cells[GPU_COL].value ? [fp, nt, fpC, ntC] : [nt, fp, ntC, fpC]
    assert.deepEqual(worse.cells[GPU_COL].vsBest, { ...compareCorrectness(worseC, betterC), best: better.seriesLabel })
    assert.equal(better.cells[GPU_COL].vsBest, undefined)
    // In the cpu column frequency-pruning has no peer at its ratio (neuron-top-k has no cpu score).
    assert.equal(fp.cells[CPU_COL].vsBest, undefined)
  })

  it('the CSV and JSON carry the split', () => {
    const csv = parseCsv(split.files.get('leaderboard.csv')!)
    const by = new Map(csv.map(r => [r.method, r]))
    const nt = by.get('neuron-top-k')!, fp = by.get('frequency-pruning')!
    assert.equal(Number(nt[`${GPU_COL} acc`]), runValues(webgpu, ntGpu).acc)
    assert.equal(nt[`${CPU_COL} acc`], '')
    assert.deepEqual([nt.status, nt.tasks_scored, nt.missing_tasks, nt.recovery_tasks], ['incomplete', '2 of 3', CPU_COL, OTHER])
    assert.deepEqual([fp.status, fp.average_tasks, fp.recovery_tasks], ['complete', sorted(OTHER, CPU_COL, GPU_COL).join(';'), sorted(OTHER, CPU_COL).join(';')])
    const json = JSON.parse(split.files.get('leaderboard.json')!) as LeaderboardData
    assert.equal(json.models[0].tasks.find(t => t.key === GPU_COL)!.scoring!.device, 'webgpu')
  })

  it('the HTML labels the columns, explains the split and why rerunning does not complete the rows', () => {
    const html = split.files.get('model-tiny.html')!
    assert.ok(html.includes(`>${SPLIT} [webgpu]<br>`) && html.includes(`>${SPLIT} [cpu]<br>`))
    assert.match(html, /title="brown-agreement v\d+, documents sample:20:seed\d+, scored on webgpu in float16 with onnxruntime [^"]+: acc \(higher is better\)"/)
    const legend = /<p class="muted scoring-note">(.*?)<\/p>/s.exec(html)![1]
    assert.equal(legend, `<b>${SPLIT}</b>: scored on several devices, one column each (<b>[cpu]</b> float32; <b>[webgpu]</b> float16). The device sets the graph's precision (float32 on the CPU, half precision on a GPU), so these are different measurements: a cell, its recovery, its significance marks and its curves compare only within its own column, and an average needs every column. On one device a cell shows its latest run (a newer onnxruntime or scoring version re-scores it).`)
    const note = /<p class="muted incomplete-note">(.*?)<\/p>/s.exec(html)![1]
    assert.ok(note.endsWith(`The store holds ${SPLIT} scored on several devices (one column each): a row scored on one lacks the others, so rerunning a sweep does not complete it; score every variant on the same device, or report each on its own store (<code>moe-harness report --db</code>).`), note)
    assert.ok(!note.includes('Merge the shards') && !note.includes('task versions, document subsets'), note)
    // Each column's curve: the unpruned model anchors ratio 0 only where it was scored (cpu), and the
    // webgpu curve draws the webgpu cells.
    const chartOf = (key: string) => {
      const at = html.indexOf(`>${key}</a>: acc vs ratio`)
      assert.ok(at >= 0, key)
      return html.slice(at, html.indexOf('</svg>', at))
    }
    const [m] = split.data.models
    const cell = (method: string, key: string) => m.rows.find(r => r.method === method)!.cells[key].value
    assert.ok(chartOf(CPU_COL).includes(`aria-label="ratio: 0; acc: ${cell('unpruned', CPU_COL)}; method: frequency-pruning"`))
    assert.ok(!chartOf(GPU_COL).includes('aria-label="ratio: 0;'))
    for (const method of ['neuron-top-k', 'frequency-pruning']) {
      assert.ok(chartOf(GPU_COL).includes(`aria-label="ratio: 0.5; acc: ${cell(method, GPU_COL)}; method: ${method}"`), method)
    }
    const taskPage = split.files.get(`task-${split.data.models[0].tasks.find(t => t.key === GPU_COL)!.slug}.html`)!
    assert.match(taskPage, /Scored on <code>webgpu<\/code> in float16 with onnxruntime [^ ]+ \(scoring key <code>[0-9a-f]{16}<\/code>\)/)
  })

  describe('another onnxruntime or scoring version on the same device', () => {
    // Another store: the unpruned model's brown-agreement re-scored on cpu, as an upgrade's sweep re-scores
    // every cell: first under another max length (a key no readable field tells apart; frequency-pruning's
    // scores stand in), then under another, odd and markup-like, onnxruntime version.
    const odd = '1.99.0-<b>dev</b>&'
    const multi = path.join(dir, 'multi.sqlite')
    fs.copyFileSync(webgpu, multi)
    resave(multi, SPLIT, hash.get('frequency-pruning@0.5')!, hash.get('unpruned')!, { device: 'cpu', maxLength: MAX_LENGTH * 2 })
    const latest = resave(multi, SPLIT, hash.get('unpruned')!, hash.get('unpruned')!, { device: 'cpu', ortVersion: odd })
    const site = path.join(dir, 'site-multi')
    const { data } = report(multi, site)
    const [m] = data.models

    it('is not a column of its own: one column per device, and a cell shows its latest run', () => {
      const agree = m.tasks.filter(t => t.name === SPLIT)
      assert.deepEqual(agree.map(t => t.scoring!.label).sort(), ['cpu', 'webgpu'])
      assert.deepEqual(agree.map(t => t.key).sort(), [CPU_COL, GPU_COL].sort())
      const base = m.rows.find(r => r.isBaseline)!
      assert.equal(base.cells[CPU_COL].value, runValues(multi, latest).acc)
      // The column says how its latest run was scored.
      assert.equal(agree.find(t => t.key === CPU_COL)!.scoring!.ortVersion, odd)
      // The rows complete before the re-scoring stay complete (the old runs are no column a row could lack).
      const complete = (d: typeof data) => d.models[0].rows.filter(r => r.average !== null).map(r => `${r.method} ${r.ratio}`).sort()
      assert.deepEqual(complete(data), complete(report(webgpu, path.join(dir, 'site-webgpu-again')).data))
    })

    it('the task page shows the onnxruntime version escaped (headless Chromium reads it back as text, no injected markup)', async () => {
      const cpuTask = m.tasks.find(t => t.key === CPU_COL)!
      const file = path.join(site, `task-${cpuTask.slug}.html`)
      const html = fs.readFileSync(file, 'utf8')
      assert.ok(html.includes('onnxruntime 1.99.0-&lt;b&gt;dev&lt;/b&gt;&amp;'), 'escaped')
      assert.ok(!html.includes('<b>dev</b>'))
      const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      })
      try {
        const page = await browser.newPage()
        await page.goto(`file://${file}`)
        const note = (await page.locator('p.scoring-note').first().textContent())!
        assert.ok(note.includes(`with onnxruntime ${odd}`), note)
        assert.equal(await page.locator('p.scoring-note b').count(), 0)
        await page.goto(`file://${path.join(site, 'model-tiny.html')}`)
        const headers = (await page.locator('table.board').first().locator('thead th').allTextContents()).map(t => t.trim())
        assert.equal(headers.filter(h => h.startsWith(SPLIT)).length, 2, headers.join(' | '))
      } finally {
        await browser.close()
      }
    })
  })
})
