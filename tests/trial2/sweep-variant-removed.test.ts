// A prepared variant folder removed while a sweep runs (a `cache prune` on another machine sharing the
// home, or by hand between two of its cells) is prepared again for the sweep's next cell, as the README
// promises ("a removed variant is prepared again when needed, with the same scores"). Found by a
// fresh-user trial: the sweep remembered the folder as prepared and its next cell failed with
// SESSION_FAILED (ENOENT on the folder's overrides-0.safetensors).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runSweep } from '../../src/sweep/runSweep.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

describe('a variant folder removed during a sweep', () => {
  const dir = tmpDir()
  useHarnessHome(path.join(dir, 'home'))
  writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 53 })
  const config = parseConfig({
    models: { m: 'm' }, methods: ['magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze', 'brown-agreement'],
    subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  }, 'test config')
  const variants = path.join(dir, 'home', 'variants')
  const folders = () => (fs.existsSync(variants) ? fs.readdirSync(variants).filter(n => /^[0-9a-f]{16}-[0-9a-f]{24}$/.test(n)) : [])

  it('is prepared again for the next cell, which scores as the first sweep did', async () => {
    const reference = await runSweep({ config, baseDir: dir, db: path.join(dir, 'a.sqlite') })
    assert.equal(reference.completed, 2, JSON.stringify(reference.failures))
    const [folder] = folders()
    assert.ok(folder)

    // A fresh store prepares the variant (the folder is reused), scores its first cell, then loses the folder.
    let removed = 0
    const summary = await runSweep({
      config, baseDir: dir, db: path.join(dir, 'b.sqlite'),
      onProgress: p => {
        if (p.done === 1 && removed === 0 && fs.existsSync(path.join(variants, folder))) {
          fs.rmSync(path.join(variants, folder), { recursive: true })
          removed++
        }
      },
    })
    assert.equal(removed, 1, 'the folder was removed between the two cells')
    assert.deepEqual(summary.failures, [])
    assert.equal(summary.completed, 2)
    assert.deepEqual(folders(), [folder], 'prepared again, under the same content hash')
    const scores = (db: string) => {
      const s = new ResultsStore(db, { readonly: true })
      try {
        return s.all<{ task: string; doc: number; lls_json: string }>('SELECT r.task, s.doc, s.lls_json FROM samples s JOIN runs r ON r.run_id = s.run_id ORDER BY r.task, s.doc')
      } finally {
        s.close()
      }
    }
    const a = scores(path.join(dir, 'a.sqlite'))
    assert.equal(a.length, 6)
    assert.deepEqual(scores(path.join(dir, 'b.sqlite')), a)
  })
})
