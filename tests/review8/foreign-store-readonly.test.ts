// Review 8: a file that is not a harness store, given to a command that only reads stores (export,
// report, merge inputs, cache prune --keep-store), was refused with "pass --db with a harness database,
// or a path where none exists yet to create one": those commands create nothing, and a new path is
// refused next ("does not exist; run a sweep first"). cache prune --keep-store named --db.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const notes = path.join(dir, 'notes.txt')
fs.writeFileSync(notes, 'my notes, not a database\n')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function refusal(args: string[]): string {
  const r = runCli(args, { env, cwd: dir })
  assert.equal(r.status, 1, r.stderr)
  const line = r.stderr.trim().split('\n').find(l => l.startsWith('error [STORE_NOT_HARNESS]'))
  assert.ok(line, r.stderr)
  assert.equal(fs.readFileSync(notes, 'utf8'), 'my notes, not a database\n')
  return line
}

describe('a file that is not a harness store, given to a command that only reads stores', () => {
  it('export and report: the fix names a harness database, not a new path', () => {
    for (const args of [['export', '--db', notes, '--csv', '-'], ['report', '--db', notes, '--out', path.join(dir, 'site')]]) {
      assert.equal(refusal(args), `error [STORE_NOT_HARNESS]: ${notes} is not a moe-harness results database: it is not a SQLite database. The harness never adds its tables to another file; pass --db with a harness database (one a sweep wrote).`)
    }
  })

  it('merge input', () => {
    assert.match(refusal(['merge', notes, '--out', path.join(dir, 'all.sqlite')]), /; pass a merge input with a harness database \(one a sweep wrote\)\.$/)
    assert.equal(fs.existsSync(path.join(dir, 'all.sqlite')), false)
  })

  it('cache prune --keep-store names its own option', () => {
    assert.match(refusal(['cache', 'prune', '--all', '--keep-store', notes]), /; pass --keep-store with a harness database \(one a sweep wrote\)\.$/)
  })

  it('a sweep (which creates its store) still offers a new path', () => {
    writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 2 })
    const config = writeSweepConfig(path.join(dir, 'c.config.ts'), { models: { m: 'model' }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-agreement'], subset: { limit: 1 } })
    assert.match(refusal(['sweep', '--config', config, '--db', notes]), /; pass --db with a harness database, or a path where none exists yet to create one\.$/)
  })
})
