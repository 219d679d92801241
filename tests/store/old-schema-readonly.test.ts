// A store written by an older harness is read as it is: report, export and merge migrate a private
// copy (in memory, or in the temp folder when large) and never write the file, which may be
// read-only, a colleague's shard or an archive. (It said "open it once read-write (e.g. moe-harness
// sweep)", and a sweep in the project folder would have run the default config into it.)
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore, SCHEMA_VERSION } from '../../src/store/resultsStore.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { rewriteAsSchema4 } from '../helpers/schema4.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** A real sweep's store (one model, unpruned, one task), then its runs table rewritten as schema 4 had it (no data_file / data_sha256). */
function schema4Store(file: string): void {
  const dir = path.dirname(file)
  writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 5 })
  const config = path.join(dir, 'c.config.ts')
  const body = { models: { m: 'm' }, methods: ['magnitude-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 3 }, pool: { workers: 1, threads: 1 } }
  writeSweepConfig(config, body)
  const sweep = runCli(['sweep', '--config', config, '--db', file], { env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
  assert.equal(sweep.status, 0, sweep.stderr)
  rewriteAsSchema4(file)
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')

describe('a store from an older harness, opened for reading', () => {
  it('export, report and merge read it; the file stays byte-identical and nothing appears beside it', () => {
    const dir = tmpDir()
    const archive = path.join(dir, 'archive')
    fs.mkdirSync(archive)
    const old = path.join(archive, 'old.sqlite')
    schema4Store(old)
    for (const f of ['m', 'c.config.ts', 'home']) fs.rmSync(path.join(archive, f), { recursive: true, force: true })
    const before = sha(old)
    const csv = runCli(['export', '--db', old, '--csv', path.join(dir, 'out.csv')])
    assert.equal(csv.status, 0, csv.stderr)
    const lines = fs.readFileSync(path.join(dir, 'out.csv'), 'utf8').trim().split('\n')
    assert.ok(lines.length >= 2, 'header and the run\'s metrics')
    assert.ok(lines.slice(1).every(l => /brown-cloze/.test(l)), lines.join('\n'))
    const report = runCli(['report', '--db', old, '--out', path.join(dir, 'site')])
    assert.equal(report.status, 0, report.stderr)
    const merged = path.join(dir, 'merged.sqlite')
    const merge = runCli(['merge', old, '--out', merged])
    assert.equal(merge.status, 0, merge.stderr)
    assert.match(merge.stdout, /1 runs merged/)
    assert.equal(sha(old), before, 'the old store is untouched')
    assert.deepEqual(fs.readdirSync(archive), ['old.sqlite'], 'no -wal, -shm or journal beside it')
    const m = new ResultsStore(merged, { readonly: true })
    try {
      assert.equal(m.db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
      assert.equal(m.storedModels().flatMap(x => m.completeRuns(x.id)).length, 1)
    } finally {
      m.close()
    }
  })

  it('a store too large to copy in memory is migrated in a temp-folder copy, removed on close', () => {
    const dir = tmpDir()
    const old = path.join(dir, 'old.sqlite')
    schema4Store(old)
    const before = sha(old)
    const temps = () => fs.readdirSync(os.tmpdir()).filter(n => n.startsWith('moe-harness-migrate-')).sort()
    const earlier = temps()
    const s = new ResultsStore(old, { readonly: true, inMemoryMigrationMaxBytes: 0 })
    try {
      assert.equal(temps().length, earlier.length + 1, 'one temp copy while open')
      assert.equal(s.storedModels().flatMap(x => s.completeRuns(x.id)).length, 1)
      assert.throws(() => s.db.exec('DELETE FROM runs'), /readonly|query_only|attempt to write/i)
    } finally {
      s.close()
    }
    assert.deepEqual(temps(), earlier)
    assert.equal(sha(old), before)
  })
})
