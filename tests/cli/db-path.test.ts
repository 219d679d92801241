// The results database path a sweep is given is checked before anything else is done or printed:
// - `--db /nonexistent/dir/x.sqlite` created the missing folders (a typo in a path became a new, empty
//   store); a missing folder is now an error naming it and the fix, unless it is the harness's own
//   (the harness home, where the default store goes, or a `.harness` folder);
// - `--db <a folder>` was refused only after the pool's 'pool: ...' line, as if the sweep had started.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { harnessHome } from '../../src/defaults.ts'
import { checkStorePath, ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

const dir = tmpDir('moe-db-path-')
const home = path.join(dir, 'home')
const config = writeSweepConfig(path.join(dir, 'c.config.ts'), {
  models: { m: path.join(ROOT, 'models', 'tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 },
})
const refused = (fn: () => unknown, code: string, pattern: RegExp) => assert.throws(fn, (e: unknown) => {
  assert.ok(e instanceof HarnessError, String(e))
  assert.equal(e.code, code)
  assert.match(e.message, pattern)
  return true
})

describe('sweep --db', () => {
  it('in a folder that does not exist: refused, naming the folder and mkdir; nothing created, nothing printed before', () => {
    const db = path.join(dir, 'nonexistent', 'dir', 'x.sqlite')
    const r = runCli(['sweep', '--config', config, '--db', db], { env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 1, r.stderr)
    assert.equal(r.stderr, `error [STORE_FAILED]: Cannot create database ${db}: its folder ${path.dirname(db)} does not exist, and the harness does not create folders you did not ask for (a mistyped path would become a new, empty store). Create it first (mkdir -p ${path.dirname(db)}), or pass --db with a path in an existing folder.\n`)
    assert.equal(fs.existsSync(path.join(dir, 'nonexistent')), false, 'no folder created')
    assert.equal(fs.existsSync(home), false, 'nothing calibrated, prepared or cached')
  })

  it('with --slurm, in a folder that does not exist: refused before the shards\' folder is made beside it', () => {
    const db = path.join(dir, 'slurm-typo', 'x.sqlite')
    // Node alone on PATH: refused before Slurm is looked for (without the check, SLURM_UNAVAILABLE came after the folder was made).
    const bin = path.join(dir, 'node-only')
    fs.mkdirSync(bin)
    fs.symlinkSync(process.execPath, path.join(bin, 'node'))
    const r = runCli(['sweep', '--slurm', '--config', config, '--db', db], { env: { MOE_HARNESS_HOME: home, PATH: bin } })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[STORE_FAILED\]: Cannot create database \S+: its folder \S+ does not exist/)
    assert.equal(fs.existsSync(path.dirname(db)), false, 'no slurm-results folder, script or shards written')
  })

  it('that is a folder: refused before the pool line or anything else is printed', () => {
    const folder = path.join(dir, 'a-folder')
    fs.mkdirSync(folder)
    const r = runCli(['sweep', '--config', config, '--db', folder], { env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 1, r.stderr)
    assert.equal(r.stderr, `error [STORE_FAILED]: ${folder} is a folder, not a database file; pass --db with a file path such as ${path.join(folder, 'results.sqlite')}.\n`)
    assert.deepEqual(fs.readdirSync(folder), [])
  })
})

describe('a new results database', () => {
  useHarnessHome(path.join(dir, 'lib-home', 'nested'))

  it('is created with its folder only where the folder is the harness\'s own', () => {
    // The default store: in the harness home, created with it (and its missing parents).
    const home = harnessHome()
    assert.equal(fs.existsSync(path.dirname(home)), false)
    new ResultsStore(path.join(home, 'results.sqlite')).close()
    assert.ok(fs.statSync(path.join(home, 'results.sqlite')).isFile())
    // The shipped config's `.harness/results.sqlite`, relative to a project that has no .harness yet.
    const project = path.join(dir, 'project')
    fs.mkdirSync(project)
    new ResultsStore(path.join(project, '.harness', 'results.sqlite')).close()
    assert.ok(fs.statSync(path.join(project, '.harness', 'results.sqlite')).isFile())
    // Anything else: refused, by the check runSweep makes first and by the open itself; nothing created.
    for (const db of [path.join(dir, 'typo', 'x.sqlite'), path.join(dir, 'no', '.harness', 'x.sqlite')]) {
      const pattern = new RegExp(`its folder ${path.dirname(db).replace(/[.]/g, '\\.')} does not exist.*mkdir -p`)
      refused(() => checkStorePath(db), 'STORE_FAILED', pattern)
      refused(() => new ResultsStore(db), 'STORE_FAILED', pattern)
      assert.equal(fs.existsSync(path.dirname(db)), false, db)
    }
    assert.equal(fs.existsSync(path.join(dir, 'no')), false)
    // In an existing folder: checked without creating anything, then created by the open.
    const fresh = path.join(dir, 'fresh.sqlite')
    checkStorePath(fresh)
    assert.equal(fs.existsSync(fresh), false)
    new ResultsStore(fresh).close()
    assert.ok(fs.statSync(fresh).isFile())
  })
})
