// A calibration length longer than the model's context was taken as given: --calibration-length 100000
// on a model with a 64-token context ran a 100,000-token calibration pass whose attention filled 21 GB
// before the kernel killed it. It is now refused before calibration, by eval (a flag) and sweep (a config field).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

function shortContextModel(root: string): string {
  const dir = writeTinyCheckpoint(path.join(root, 'model'), { family: 'olmoe', seed: 9 }).dir
  const file = path.join(dir, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), max_position_embeddings: 64 }))
  return dir
}

describe('a calibration length longer than the context', () => {
  it('is refused by eval before calibrating, naming the flag, the context and the fix', () => {
    const root = tmpDir()
    const model = shortContextModel(root)
    const env = { MOE_HARNESS_HOME: path.join(root, 'home') }
    const base = ['eval', '--model', model, '--tasks', 'brown-cloze', '--limit', '2', '--method', 'reap', '--ratio', '0.25', '--calibration-sequences', '2']
    const r = runCli([...base, '--calibration-length', '1000'], { env, timeoutMs: 60_000 })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: --calibration-length 1000 is longer than the context of .*max_position_embeddings 64.*Use at most 64/)
    assert.equal(fs.existsSync(path.join(root, 'home', 'calibration')), false)
    // At the context it calibrates and scores.
    const ok = runCli([...base, '--calibration-length', '64'], { env, timeoutMs: 60_000 })
    assert.equal(ok.status, 0, ok.stderr)
    assert.match(ok.stderr, /calibration [\d.]+ s \(128 tokens\)/)
  })

  it('is refused by a sweep before any work, naming the config field and the model', () => {
    const root = tmpDir()
    const model = shortContextModel(root)
    const config = writeSweepConfig(path.join(root, 'harness.config.ts'), {
      models: { short: model }, methods: ['reap'], ratios: [0.25], tasks: ['brown-cloze'], subset: { limit: 2 },
      calibration: { sequences: 2, length: 1000 }, store: path.join(root, 'results.sqlite'),
    })
    const r = runCli(['sweep', '--config', config], { env: { MOE_HARNESS_HOME: path.join(root, 'home') }, timeoutMs: 60_000 })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[CONFIG_INVALID\]: calibration\.length 1000 in harness\.config\.ts is longer than the context of model 'short'.*Use at most 64/)
    assert.equal(fs.existsSync(path.join(root, 'home', 'calibration')), false)
  })
})
