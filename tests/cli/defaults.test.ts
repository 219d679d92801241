// One frozen defaults module (issue 12 §5): the config schema, the CLI and calibration agree on what
// "not given" means, and nothing can change a default at run time.
import assert from 'node:assert/strict'
import os from 'node:os'
import { describe, it } from 'node:test'
import { defaultCalibration } from '../../src/calibration/source.ts'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { DEFAULTS, defaultThreads } from '../../src/defaults.ts'
import { subsetKey } from '../../src/tasks/registry.ts'
import { runCli } from '../helpers/cli.ts'

describe('defaults', () => {
  it('are frozen', () => {
    assert.throws(() => { (DEFAULTS as { sampleSeed: number }).sampleSeed = 1 }, TypeError)
    assert.throws(() => { (DEFAULTS.calibration as { seed: number }).seed = 1 }, TypeError)
  })

  it('a config without the fields, calibration and the subset key use the same values', () => {
    const config = parseConfig({ models: { a: 'x' }, subset: { sample: 5 } }, 'test config')
    const calib = defaultCalibration(512)
    assert.equal(config.calibration.seed, calib.seed)
    assert.equal(config.calibration.source, calib.source)
    assert.equal(calib.length, 512)
    assert.equal(defaultCalibration(1 << 20).length, DEFAULTS.calibration.maxLength)
    // A sample without a seed keys like the config's default seed, so eval and sweep share results.
    assert.equal(subsetKey({ sample: 5 }), subsetKey(config.subset))
    assert.equal(config.batchTokens, DEFAULTS.batchTokens)
    assert.equal(config.pool.workers, DEFAULTS.workers)
  })

  it('threads: the cores shared by the workers, at least one each', () => {
    const cores = os.availableParallelism()
    assert.equal(defaultThreads(), cores)
    assert.equal(defaultThreads(cores * 2), 1)
    assert.equal(defaultThreads(2), Math.max(1, Math.floor(cores / 2)))
  })

  it('the CLI shows the same defaults in its help', () => {
    const help = runCli(['eval', '--help']).stdout.replace(/\s+/g, ' ')
    assert.match(help, new RegExp(`--seed <n> seed of --sample \\(default: "${DEFAULTS.sampleSeed}"\\)`))
    assert.match(help, new RegExp(`--calibration-seed <n> seed of the calibration sample \\(default: "${DEFAULTS.calibration.seed}"\\)`))
    assert.match(help, new RegExp(`--batch-tokens <n> .*\\(default: "${DEFAULTS.batchTokens}"\\)`))
  })
})
