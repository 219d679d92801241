// A prepared variant folder names the model folder it was built from, and pool workers open that one.
// When the same weights move to another path (same fingerprint, so the sweep reuses the variant by id)
// and another model takes the old path, new cells of that variant must still be scored on the moved
// checkpoint, as a clean sweep of the new path scores them (found by a fresh-user trial: they were
// scored on whatever the old path held, silently).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const shape = { family: 'mixtral' as const, dtype: 'BF16' as const, experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8 }
writeTinyCheckpoint(path.join(dir, 'a'), { ...shape, seed: 11 })
writeTinyCheckpoint(path.join(dir, 'other'), { ...shape, seed: 12 })

function sweep(name: string, model: string, tasks: string[], home: string, db: string) {
  const file = path.join(dir, `${name}.config.ts`)
  const body = { models: { m: model }, methods: [{ method: 'magnitude-pruning', params: { score: 'magnitude' } }], ratios: [0.5], tasks, subset: { sample: 4, seed: 3 }, pool: { workers: 1, threads: 1 } }
  writeSweepConfig(file, body)
  // A zero spill budget stores the edited tensors as overrides files, linked into the variant folder.
  const r = runCli(['sweep', '--config', file, '--db', db, '--json'], { env: { MOE_HARNESS_HOME: home, MOE_HARNESS_SPILL_MB: '0' } })
  assert.equal(r.status, 0, r.stderr)
  return lastJson(r.stdout)
}

/** Per-sample log-likelihoods of the magnitude-pruned variant on `task`, by document. */
function lls(db: string, task: string): Map<number, string> {
  const s = new ResultsStore(db, { readonly: true })
  try {
    const rows = s.all<{ doc: number; lls_json: string }>(`SELECT s.doc, s.lls_json FROM samples s JOIN runs r ON r.run_id = s.run_id
      JOIN variants v ON v.model_id = r.model_id AND v.content_hash = r.content_hash
      WHERE r.task = ? AND v.method = 'magnitude-pruning' AND v.ratio = 0.5 AND r.status = 'complete'`, task)
    return new Map(rows.map(r => [r.doc, r.lls_json]))
  } finally {
    s.close()
  }
}

describe('a model moved to another path after its variants were prepared', () => {
  const home = path.join(dir, 'home')
  const db = path.join(dir, 'results.sqlite')

  it('scores new cells on the moved checkpoint, not on what the old path holds now', () => {
    assert.equal(sweep('first', 'a', ['brown-cloze'], home, db).completed, 1)
    // The same weights move to b; another model (same shape, other weights) takes the path a.
    fs.renameSync(path.join(dir, 'a'), path.join(dir, 'b'))
    fs.renameSync(path.join(dir, 'other'), path.join(dir, 'a'))
    const moved = sweep('moved', 'b', ['brown-cloze', 'brown-agreement'], home, db)
    assert.deepEqual([moved.completed, moved.skipped, moved.failed], [1, 1, 0])

    const clean = path.join(dir, 'clean.sqlite')
    assert.equal(sweep('clean', 'b', ['brown-agreement'], path.join(dir, 'home-clean'), clean).completed, 1)
    const got = lls(db, 'brown-agreement')
    const want = lls(clean, 'brown-agreement')
    assert.equal(got.size, 4)
    assert.deepEqual(got, want)
    // The stored folder now names the moved checkpoint.
    const variants = fs.readdirSync(path.join(home, 'variants')).filter(f => /^[0-9a-f]{16}-[0-9a-f]{24}$/.test(f))
    assert.ok(variants.length > 0)
    for (const v of variants) assert.equal(JSON.parse(fs.readFileSync(path.join(home, 'variants', v, 'edits.json'), 'utf8')).modelDir, path.join(dir, 'b'))
  })
})
