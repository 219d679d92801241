// The static site: rendered from SQLite alone, deterministic, every user string escaped, and working
// in a real headless Chromium from file:// (no console errors, sorting, filters, charts).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const modelDir = path.join(dir, 'model')
writeTinyCheckpoint(modelDir, { family: 'olmoe', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 71 })
const EVIL = '<b>x</b><script>window.__xss = 1</script>'
const configFile = path.join(dir, 'report.config.ts')
fs.writeFileSync(configFile, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({
  models: { [EVIL]: 'model' },
  methods: ['frequency-pruning', 'neuron-top-k', { method: 'expert-merging', params: { algorithm: ['hc-smoe', 'm-smoe'] } }],
  ratios: [0, 0.25, 0.5],
  tasks: ['brown-cloze', 'brown-agreement', 'brown-perplexity'],
  subset: { sample: 20 },
  calibration: { sequences: 4, length: 32 },
}, null, 2)})
`)
const db = path.join(dir, 'results.sqlite')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const ARTIFACTS = path.join(ROOT, 'tests', '.artifacts')

function readSite(site: string): Map<string, string> {
  return new Map(fs.readdirSync(site).sort().map(f => [f, fs.readFileSync(path.join(site, f), 'utf8')]))
}

describe('moe-harness report', () => {
  const site = path.join(dir, 'site')

  it('renders from the database alone, deterministically, with every user string escaped', () => {
    assert.equal(runCli(['sweep', '--config', configFile, '--db', db], { env }).status, 0)
    // The model folder is gone: the report must not need it.
    fs.renameSync(modelDir, `${modelDir}.moved`)
    try {
      const r = runCli(['report', '--db', db, '--out', site, '--title', 'Test <i>board</i>'])
      assert.equal(r.status, 0, r.stderr)
      const again = path.join(dir, 'site-again')
      assert.equal(runCli(['report', '--db', db, '--out', again, '--title', 'Test <i>board</i>']).status, 0)
      const a = readSite(site), b = readSite(again)
      assert.deepEqual([...a.keys()], [...b.keys()])
      for (const [f, html] of a) assert.equal(html, b.get(f), `${f} differs between two renders`)
      for (const [f, html] of a) {
        if (!f.endsWith('.html')) continue
        assert.ok(!html.includes('<script>window.__xss'), `${f} contains the raw script`)
        assert.ok(!html.includes('<i>board</i>'), `${f} contains the raw title`)
      }
      assert.ok(a.get('index.html')!.includes('&lt;script&gt;window.__xss'), 'the model name is shown as text')
      const index = a.get('index.html')!
      for (const m of ['frequency-pruning', 'neuron-top-k', 'expert-merging', 'unpruned']) assert.ok(index.includes(m), m)
      assert.ok((index.match(/<svg/g) ?? []).length >= 3, 'curves and Pareto charts are inlined')
      assert.ok(!/(src|href)="https?:/.test(index), 'no network assets')
      for (const page of ['methods.html', 'tasks.html', 'method-expert-merging.html', 'task-brown-cloze.html']) assert.ok(a.has(page), page)
      assert.ok([...a.keys()].some(f => f.startsWith('run-') && f.includes('frequency-pruning')))
    } finally {
      fs.renameSync(`${modelDir}.moved`, modelDir)
    }
  })

  it("derives per-document correctness that averages to every stored accuracy, and reads the stored higher-is-better flag", () => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      const tasks = new Map(store.storedTasks().map(t => [t.name, t]))
      let checked = 0
      for (const m of store.storedModels()) {
        for (const run of store.completeRuns(m.id)) {
          const task = tasks.get(run.task)!
          for (const metric of task.metrics) {
            const stored = store.runMetric(run.runId, metric)
            const correct = store.sampleCorrectness(run.runId, task.kind, metric)
            if (!stored?.higherIsBetter) {
              assert.equal(correct, null, `${run.task} ${metric} is not an accuracy`)
              continue
            }
            assert.ok(correct && correct.length === run.docs, `${run.task} ${metric}: one outcome per document`)
            assert.ok(Math.abs(correct.reduce((a, b) => a + b, 0) / correct.length - stored.value) < 1e-12, `${run.task} ${metric} run ${run.runId}`)
            checked++
          }
        }
      }
      assert.ok(checked >= 20, `${checked} accuracy runs checked`)
      assert.equal(store.metricHigherIsBetter('brown-cloze', 1, 'acc'), true)
      assert.equal(store.metricHigherIsBetter('brown-perplexity', 1, 'word_perplexity'), false)
      assert.equal(store.metricHigherIsBetter('brown-cloze', 1, 'no_such_metric'), undefined)
    } finally {
      store.close()
    }
  })

  it('works in headless Chromium from file://: no console errors, sorting, filters, charts', async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    })
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
      const errors: string[] = []
      page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
      page.on('pageerror', e => errors.push(e.message))
      await page.goto(`file://${path.join(site, 'index.html')}`)
      assert.deepEqual(errors, [])
      assert.equal(await page.evaluate(() => (globalThis as any).__xss), undefined, "the injected script never ran")
      assert.ok((await page.locator('svg').count()) >= 3)
      const table = page.locator('table.board').first()
      const memoryCol = (await table.locator('thead th').allTextContents()).findIndex(t => t.trim() === 'memory')
      assert.ok(memoryCol > 0)
      const column = () => table.locator(`tbody tr:not([hidden]) td:nth-child(${memoryCol + 1})`).evaluateAll(cells => cells.map(c => Number(c.getAttribute('data-v'))))
      await table.locator('thead th').nth(memoryCol).click()
      const desc = await column()
      assert.deepEqual(desc, [...desc].sort((x, y) => y - x))
      await table.locator('thead th').nth(memoryCol).click()
      const asc = await column()
      assert.deepEqual(asc, [...asc].sort((x, y) => x - y))
      assert.notDeepEqual(asc, desc)
      await page.locator('.leaderboard select[data-filter="method"]').first().selectOption('neuron-top-k')
      const methods = await table.locator('tbody tr:not([hidden]) td:first-child').allTextContents()
      assert.ok(methods.length >= 2 && methods.every(m => m.trim() === 'neuron-top-k'), JSON.stringify(methods))
      await page.locator('.leaderboard [data-filter-task="brown-cloze"]').first().uncheck()
      assert.equal(await table.locator('th[data-task="brown-cloze"]').isVisible(), false)
      fs.mkdirSync(ARTIFACTS, { recursive: true })
      await page.screenshot({ path: path.join(ARTIFACTS, 'report-index.png'), fullPage: true })
      for (const f of fs.readdirSync(site).filter(x => /^(run|method|task)-/.test(x)).slice(0, 6)) {
        await page.goto(`file://${path.join(site, f)}`)
        assert.ok((await page.locator('svg').count()) >= 1, `${f} has charts`)
      }
      await page.screenshot({ path: path.join(ARTIFACTS, 'report-detail.png'), fullPage: true })
      assert.deepEqual(errors, [])
    } finally {
      await browser.close()
    }
  })
})
