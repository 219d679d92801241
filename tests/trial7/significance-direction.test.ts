// Fresh-user trial 7: the leaderboard's significance mark against the unpruned model says which way
// the difference goes. Found: every significant cell showed ▼ (the legend reads "▼/▲"), so a pruned
// variant with a significantly *lower* perplexity than the unpruned model (better, as pruning papers
// report at low ratios) was marked like one significantly worse. A real sweep of a tiny random model,
// a real `report`, and each mark checked against the sign of the stored values.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { compareCorrectness, comparePerplexity } from '../../src/report/significance.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { reportSite } from '../helpers/site.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('significance marks against the unpruned model', () => {
  it('PairedResult.favours names the side with higher accuracy / lower perplexity', () => {
    assert.equal(compareCorrectness([1, 1, 1, 0], [0, 0, 1, 0]).favours, 'a')
    assert.equal(compareCorrectness([0, 0, 1, 0], [1, 1, 1, 0]).favours, 'b')
    assert.equal(compareCorrectness([1, 0], [0, 1]).favours, 'neither')
    // Log-likelihoods: a's are higher, so its perplexity is lower.
    assert.equal(comparePerplexity([-1, -2, -1.5], [-2, -3, -2.5], [1, 1, 1]).favours, 'a')
    assert.equal(comparePerplexity([-2, -3, -2.5], [-1, -2, -1.5], [1, 1, 1]).favours, 'b')
  })

  it('a significantly better cell shows ▲ and a significantly worse one ▼', () => {
    const dir = tmpDir()
    writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 8, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 71 })
    const config = writeSweepConfig(path.join(dir, 'c.config.ts'), {
      models: { tiny: 'model' }, methods: ['frequency-pruning'], ratios: [0, 0.25, 0.5], tasks: ['brown-perplexity'],
      subset: { limit: 12 }, calibration: { sequences: 4, length: 32 }, pool: { workers: 1, threads: 1 },
    })
    const db = path.join(dir, 'r.sqlite')
    const r = runCli(['sweep', '--config', config, '--db', db], { env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 0, r.stderr)
    const { data, files } = reportSite(db, path.join(dir, 'site'))
    const [model] = data.models
    const task = model.tasks[0]
    assert.equal(task.higherIsBetter, false)
    const base = model.rows.find(x => x.isBaseline)!.cells[task.key].value
    const html = files.get('model-tiny.html')!
    const seen = new Set<string>()
    for (const row of model.rows.filter(x => !x.isBaseline)) {
      const cell = row.cells[task.key]
      if (!cell.vsBaseline || cell.vsBaseline.p >= 0.05) continue
      const better = cell.value < base
      seen.add(better ? 'better' : 'worse')
      assert.equal(cell.vsBaseline.favours, better ? 'a' : 'b', `${row.method} ${row.ratio}`)
      const tr = html.split('<tr class=').find(t => t.includes(`data-method="${row.method}" data-ratio="${row.ratio}"`))!
      assert.match(tr, new RegExp(`title="${better ? 'better' : 'worse'} than unpruned: paired bootstrap, p [^"]*">${better ? '▲' : '▼'}</span>`), `${row.method} ${row.ratio}: ${cell.value} vs unpruned ${base}`)
      // The variant's own page says it in words.
      assert.match(files.get(`run-${row.slug}.html`)!, new RegExp(`<td class="text">${better ? 'better' : 'worse'}, p = `))
    }
    // The seeded fixture has one of each (ratio 0.5 lowers this random model's perplexity, 0.25 raises it).
    assert.deepEqual([...seen].sort(), ['better', 'worse'])
    assert.match(html, /▼<\/span>\/<span class="sig base">▲<\/span> significantly worse\/better than the unpruned model/)
  })
})
