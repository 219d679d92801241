// A sweep that must rewrite a prepared variant folder under a harness home it cannot write says why
// that variant needs preparing (its folder is damaged, naming the file): "Cannot prepare 1 variant(s)"
// alone had puzzled a user whose variants were all prepared (fresh-user trial). Runs the CLI as nobody.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, runCliAsync, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('a read-only harness home with a damaged variant folder', () => {
  it('names the damaged file in the FILE_ACCESS error, before any calibration', { skip: process.getuid?.() !== 0 && 'needs root to run the CLI as nobody' }, async () => {
    const dir = tmpDir()
    fs.chmodSync(dir, 0o755)
    writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 21 })
    const home = path.join(dir, 'home')
    const stores = path.join(dir, 'stores')
    fs.mkdirSync(stores, { mode: 0o777 })
    fs.chmodSync(stores, 0o777)
    const db = path.join(stores, 'r.sqlite')
    const config = (tasks: string[]) => {
      const file = path.join(dir, `${tasks.length}.config.ts`)
      const body = { models: { m: 'model' }, methods: [{ method: 'magnitude-pruning', params: { score: 'magnitude' } }], ratios: [0.5], tasks, subset: { sample: 2 }, pool: { workers: 1, threads: 1 } }
      writeSweepConfig(file, body)
      return file
    }
    const env = { MOE_HARNESS_HOME: home, MOE_HARNESS_SPILL_MB: '0' }
    const first = runCli(['sweep', '--config', config(['brown-cloze']), '--db', db], { env })
    assert.equal(first.status, 0, first.stderr)
    fs.chmodSync(db, 0o666)

    const folder = fs.readdirSync(path.join(home, 'variants')).map(f => path.join(home, 'variants', f))
      .find(f => fs.readdirSync(f).some(n => /^overrides-\d+\.safetensors$/.test(n)))!
    const damaged = path.join(folder, fs.readdirSync(folder).find(n => /^overrides-\d+\.safetensors$/.test(n))!)
    fs.truncateSync(damaged, 10)

    // A new task needs the variant again; the home (root's, 755) cannot be written by nobody.
    const r = await runCliAsync(['sweep', '--config', config(['brown-cloze', 'brown-agreement']), '--db', db], { env, cwd: dir, uid: 65534, gid: 65534, timeoutMs: 120_000 })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[FILE_ACCESS\]: Cannot prepare 1 variant\(s\) \(m magnitude-pruning r=0\.5: its folder is damaged, /)
    assert.ok(r.stderr.includes(`${damaged} is damaged (it has 10 bytes`), r.stderr)
    assert.match(r.stderr, /set MOE_HARNESS_HOME to a writable folder/)
  })
})
