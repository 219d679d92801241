// A paper's method name that is a parameter value here (Wanda and MoE-Pruner are scores of
// magnitude-pruning) is answered with how to ask for it, on the command line and in a config;
// a typo still gets "Did you mean". Found by a fresh-user trial (`--method wanda` listed file names only).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = path.join(dir, 'model')
writeTinyCheckpoint(model, { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 5 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('unknown method names', () => {
  it('eval --method wanda names magnitude-pruning score=wanda', () => {
    const r = runCli(['eval', '--model', model, '--method', 'wanda', '--sample', '2'], { env })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[UNKNOWN_NAME\]: Unknown method 'wanda': it is a parameter value, use --method magnitude-pruning --param score=wanda \(config: \{ method: 'magnitude-pruning', params: \{ score: 'wanda' \} \}\)/)
  })

  it('a sweep config naming moe-pruner gets the config form, before any work', () => {
    const file = path.join(dir, 'c.config.ts')
    const body = { models: { m: model }, methods: ['moe-pruner'], ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 2 } }
    writeSweepConfig(file, body)
    const r = runCli(['sweep', '--config', file, '--db', path.join(dir, 'r.sqlite')], { env })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /Unknown method 'moe-pruner'.*params: \{ score: 'moe-pruner' \}/)
    assert.equal(fs.existsSync(path.join(dir, 'home', 'calibration')), false)
  })

  it('a typo still gets the closest names', () => {
    const r = runCli(['eval', '--model', model, '--method', 'reaap'], { env })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /Unknown method 'reaap'\. Did you mean: reap\?/)
  })
})
