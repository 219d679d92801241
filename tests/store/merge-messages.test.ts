// merge's messages when the output is also an input, and the corrupt-store text (short, command-appropriate).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** A harness store with one model and `runs` runs (500 samples each, so it spans many pages). */
function storeWith(file: string, runs: number, tag: string): string {
  const s = new ResultsStore(file)
  s.upsertModel({ model_id: 'm', name: 'n', path: 'p', architecture: 'a', config_json: '{}', total_params: 1 })
  for (let r = 0; r < runs; r++) {
    s.saveRun({ model_id: 'm', content_hash: `${tag}${r}`, task: 't', task_version: 1, subset: 'all', scoring_key: 'k', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 500, seconds: 1, tokens_processed: 1, tokens_per_choice: 1 },
      [], Array.from({ length: 500 }, (_, doc) => ({ doc, gold_json: '0', lls_json: '[-1,-2,-3,-4]', lls_unconditional_json: null, greedy_json: '[]', preds_json: '{}', counts_json: null })))
  }
  s.close()
  return file
}

describe('merge messages', () => {
  const dir = tmpDir()
  const a = storeWith(path.join(dir, 'a.sqlite'), 1, 'a')
  const x = storeWith(path.join(dir, 'x.sqlite'), 1, 'x')

  it('the only input being the output says so (not "needs at least one input")', () => {
    const r = runCli(['merge', x, '--out', x])
    assert.notEqual(r.status, 0, r.stderr)
    assert.match(r.stderr, /INVALID_ARGUMENT/)
    assert.match(r.stderr, /the only input, .*x\.sqlite, is also the output --out/)
    assert.doesNotMatch(r.stderr, /at least one input/)
  })

  it('an input that is also the output is skipped with a line saying so; the others are merged', () => {
    const r = runCli(['merge', a, x, '--out', x])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /x\.sqlite: skipped, it is the output --out/)
    assert.match(r.stdout, /a\.sqlite: 1 runs merged, 0 already present/)
    const s = new ResultsStore(x, { readonly: true })
    try {
      assert.equal((s.all('SELECT COUNT(*) AS n FROM runs') as { n: number }[])[0]!.n, 2)
    } finally {
      s.close()
    }
  })

  it('a corrupt input: one short line, no raw SQLite page diagnostics, and no --db advice for merge', () => {
    const big = storeWith(path.join(dir, 'big.sqlite'), 3, 'b')
    const bytes = fs.readFileSync(big)
    fs.writeFileSync(path.join(dir, 'half.sqlite'), bytes.subarray(0, Math.floor(bytes.length / 2)))
    const r = runCli(['merge', a, path.join(dir, 'half.sqlite'), '--out', path.join(dir, 'all.sqlite')])
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /STORE_CORRUPT/)
    assert.match(r.stderr, /half\.sqlite is damaged/)
    assert.doesNotMatch(r.stderr, /btreeInitPage|On tree page|\*\*\* in database/)
    assert.doesNotMatch(r.stderr, /--db/)
    assert.match(r.stderr, /leave it out of the merge|--out for merge/)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.equal(fs.existsSync(path.join(dir, 'all.sqlite')), false)
  })

  it('advice names merge\'s own arguments, never sweep\'s --db', () => {
    const notes = path.join(dir, 'notes.sqlite')
    fs.writeFileSync(notes, 'my notes, not a database\n')
    const foreign = runCli(['merge', a, notes, '--out', path.join(dir, 'f.sqlite')])
    assert.notEqual(foreign.status, 0)
    assert.match(foreign.stderr, /STORE_NOT_HARNESS/)
    assert.match(foreign.stderr, /pass a merge input with a harness database/)
    assert.doesNotMatch(foreign.stderr, /--db/)
    assert.equal(fs.readFileSync(notes, 'utf8'), 'my notes, not a database\n')
    const folder = path.join(dir, 'shard.sqlite')
    fs.mkdirSync(folder)
    const dirInput = runCli(['merge', a, folder, '--out', path.join(dir, 'g.sqlite')])
    assert.notEqual(dirInput.status, 0)
    assert.match(dirInput.stderr, /is a folder, not a database file; pass a merge input with a file path/)
    assert.doesNotMatch(dirInput.stderr, /--db/)
    // The store itself words its advice by the flag it was opened under.
    assert.throws(() => new ResultsStore(notes, { flag: '--out' }), (e: Error) => /pass --out with a harness database/.test(e.message) && !/--db/.test(e.message))
    assert.throws(() => new ResultsStore(notes), /pass --db with a harness database/)
  })
})
