// Prints a markdown table for a results store: method × ratio × task primary metrics, plus the
// validation cross-entropy of each variant (windows of the validation split, scored with the variant's
// edits). Usage: node --import tsx tools/report/method-table.ts .harness/results.sqlite [windows]
import fs from 'node:fs'
import path from 'node:path'
import { harnessHome } from '../../src/calibration/cache.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { summarize } from '../../src/report/leaderboardData.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { readVariantFiles } from '../../src/edits/variantFolder.ts'

const [db = '.harness/results.sqlite', count = '256'] = process.argv.slice(2)
const store = new ResultsStore(db, { readonly: true })
const data = summarize(store, 'table')
const hashes = new Map(store.all<{ variant_id: string; content_hash: string }>('SELECT variant_id, content_hash FROM variants').map(v => [v.variant_id, v.content_hash]))
const paths = new Map(store.all<{ model_id: string; path: string }>('SELECT model_id, path FROM models').map(m => [m.model_id, m.path]))
store.close()
const stream = new Uint16Array(fs.readFileSync('build/corpus/validation.bin').buffer.slice(0))

for (const model of data.models) {
  const ckpt = openCheckpoint(paths.get(model.id)!)
  const T = ckpt.spec.maxPositions
  const total = Math.floor((stream.length - 1) / T)
  // The last windows of the validation stream. Calibration samples the same split, so these windows
  // may overlap calibration text: compare variants with this column, not with held-out numbers.
  const windows = Array.from({ length: Math.min(Number(count), total) }, (_, i) => total - 1 - i).map(j => Array.from(stream.subarray(j * T, j * T + T + 1)))
  const tasks = model.tasks
  const header = ['method', 'params', 'ratio', ...tasks.map(t => `${t.name} (${t.metric})`), 'avg', 'val CE']
  console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`)
  for (const row of model.rows.filter(r => r.isBaseline || r.ratio === 0.25 || r.ratio === 0.5)) {
    const dir = path.join(harnessHome(), 'variants', `${ckpt.fingerprint().slice(0, 16)}-${hashes.get(row.variantId)}`)
    const { edits } = readVariantFiles(dir)
    const scorer = await createLocalScorer(ckpt, edits, { device: 'cpu', threads: 2 })
    const res = await scorer.score(windows.map(w => ({ prefix: w, branches: [], scorePrefixFrom: 1 })), { maxBatchTokens: 4096 })
    await scorer.release()
    const ce = -res.reduce((s, r) => s + r.prefix.reduce((a, b) => a + b, 0), 0) / (windows.length * T)
    const cells = tasks.map(t => {
      const c = row.cells[t.name]
      return c ? (t.isAccuracy ? `${(100 * c.value).toFixed(1)}` : c.value.toFixed(0)) : '–'
    })
    console.log(`| ${row.method} | ${row.paramsLabel} | ${row.ratio} | ${cells.join(' | ')} | ${row.average === null ? '–' : (100 * row.average).toFixed(1)} | ${ce.toFixed(3)} |`)
  }
}
