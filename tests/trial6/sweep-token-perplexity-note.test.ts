// A sweep whose subset leaves a rolling task shorter than one token-perplexity window stored no
// token_perplexity and said nothing. It now logs one warning per model and task, naming the fix.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runSweep } from '../../src/sweep/runSweep.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

describe('a sweep over a corpus shorter than one token-perplexity window', () => {
  const dir = tmpDir()
  useHarnessHome(path.join(dir, 'home'))
  const model = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'qwen3_moe', experts: 4, topK: 2, layers: 2, seed: 71 })
  // A 4096-token context: the window is the papers' 2048, longer than one Brown document.
  fs.writeFileSync(path.join(model.dir, 'config.json'), JSON.stringify({ ...model.config, max_position_embeddings: 4096 }))
  const config = parseConfig({
    models: { m: 'm' }, methods: ['frequency-pruning'], ratios: [0, 0.5], tasks: ['brown-perplexity'],
    subset: { limit: 1 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  }, 'test config')

  it('logs why token_perplexity is absent once, and stores the other perplexities', async () => {
    const lines: string[] = []
    const db = path.join(dir, 'r.sqlite')
    const summary = await runSweep({ config, baseDir: dir, db, log: l => lines.push(l) })
    assert.equal(summary.completed, 2, JSON.stringify(summary.failures))
    const notes = lines.filter(l => l.includes('token_perplexity'))
    assert.equal(notes.length, 1, lines.join('\n'))
    assert.match(notes[0]!, /^warning: m: brown-perplexity: token_perplexity not computed: its 1 document joined are \d+ tokens, fewer than one 2048-token window .*--limit/)
    const store = new ResultsStore(db, { readonly: true })
    try {
      const metrics = store.all<{ metric: string }>('SELECT DISTINCT metric FROM metrics ORDER BY metric').map(r => r.metric)
      assert.deepEqual(metrics, ['bits_per_byte', 'byte_perplexity', 'word_perplexity'])
    } finally {
      store.close()
    }
  })
})
