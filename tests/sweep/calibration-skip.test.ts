// A sweep runs no calibration pass for a model whose every calibrating variant is already prepared
// (found through the store or the home's by-id index) when no cached pass exists: a read-only shared
// home, or a pruned calibration cache, paid a full pass on every run only to record the routing load.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('calibration of prepared variants', () => {
  it('is skipped when every variant needing it is prepared and no pass is cached; scores are unchanged', () => {
    const dir = tmpDir()
    const home = path.join(dir, 'home')
    const env = { MOE_HARNESS_HOME: home }
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 61 })
    const config = path.join(dir, 'c.config.ts')
    const body = { models: { m: 'm' }, methods: ['frequency-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 } }
    writeSweepConfig(config, body)
    const sweep = (db: string) => runCli(['sweep', '--config', config, '--db', path.join(dir, db), '--json'], { env, cwd: dir })
    const first = sweep('a.sqlite')
    assert.equal(first.status, 0, first.stderr)
    assert.match(first.stderr, /calibration for m: computed/)
    fs.rmSync(path.join(home, 'calibration'), { recursive: true })
    const second = sweep('b.sqlite')
    assert.equal(second.status, 0, second.stderr)
    assert.match(second.stderr, /calibration for m: skipped, every variant that needs it is prepared/)
    assert.equal(fs.existsSync(path.join(home, 'calibration')), false, 'no pass ran')
    assert.equal(lastJson(second.stdout).completed, 1)
    const acc = (db: string) => {
      const s = new ResultsStore(path.join(dir, db), { readonly: true })
      try {
        return s.storedModels().flatMap(m => s.completeRuns(m.id)).map(r => s.runMetric(r.runId, 'acc')!.value)
      } finally {
        s.close()
      }
    }
    assert.deepEqual(acc('b.sqlite'), acc('a.sqlite'))
    // A variant that still needs preparing calibrates as before.
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('"ratios":[0.5]', '"ratios":[0.5,0.25]'))
    const third = sweep('b.sqlite')
    assert.equal(third.status, 0, third.stderr)
    assert.match(third.stderr, /calibration for m: computed/)
  })
})
