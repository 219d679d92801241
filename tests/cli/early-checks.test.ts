// Settings that cannot work stop a command before it calibrates, prepares or writes anything: bad
// environment variables (checked for every command) and a precision the device cannot run.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { spillBudgetBytes } from '../../src/edits/overrideSpill.ts'
import { graphCacheLimitBytes } from '../../src/onnx/graphStore.ts'
import { describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = path.join(ROOT, 'models', 'tiny-moe')
const config = path.join(dir, 'c.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { m: model }, methods: ['magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 4 }, pool: { workers: 1, threads: 1 },
})})\n`)

describe('early checks', () => {
  for (const [name, value, pattern] of [
    ['MOE_HARNESS_SPILL_MB', 'lots', /MOE_HARNESS_SPILL_MB must be a number of megabytes/],
    ['MOE_HARNESS_SPILL_MB', ' ', /MOE_HARNESS_SPILL_MB must be a number of megabytes/],
    ['MOE_HARNESS_SPILL_MB', '0x10', /MOE_HARNESS_SPILL_MB must be a number of megabytes/],
    ['MOE_HARNESS_WEIGHTS', 'mmap', /MOE_HARNESS_WEIGHTS must be 'mapped' or 'memory'/],
    ['MOE_HARNESS_GRAPH_CACHE_GB', '-3', /MOE_HARNESS_GRAPH_CACHE_GB must be a number of gigabytes/],
  ] as const) {
    it(`${name}='${value}' stops a sweep before it writes anything`, () => {
      const home = path.join(dir, `home-${name}-${value.trim() || 'blank'}`)
      const db = path.join(dir, `${name}-${value.trim() || 'blank'}.sqlite`)
      const r = runCli(['sweep', '--config', config, '--db', db], { env: { MOE_HARNESS_HOME: home, [name]: value } })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, /^error \[CONFIG_INVALID\]: /)
      assert.match(r.stderr, pattern)
      assert.equal(fs.existsSync(db), false, 'no store written')
      assert.equal(fs.existsSync(home), false, 'nothing calibrated or prepared')
    })
  }

  it('MOE_HARNESS_SPILL_MB accepts a number of megabytes or Infinity', () => {
    for (const value of ['0', '256', '0.5', 'Infinity']) {
      const r = runCli(['methods'], { env: { MOE_HARNESS_SPILL_MB: value } })
      assert.equal(r.status, 0, `${value}: ${r.stderr}`)
    }
  })

  it('MOE_HARNESS_SPILL_MB and MOE_HARNESS_GRAPH_CACHE_GB read numbers alike (1e3 was refused by one, 0x10 taken by the other)', () => {
    const read = (name: string, value: string, get: () => number) => {
      const before = process.env[name]
      process.env[name] = value
      try {
        return get()
      } catch (e) {
        return (e as { code?: string }).code
      } finally {
        if (before === undefined) delete process.env[name]
        else process.env[name] = before
      }
    }
    const spill = (v: string) => read('MOE_HARNESS_SPILL_MB', v, spillBudgetBytes)
    const cache = (v: string) => read('MOE_HARNESS_GRAPH_CACHE_GB', v, graphCacheLimitBytes)
    for (const [value, mb] of [['1e3', 1000], ['.5', 0.5], [' 2 ', 2], ['0', 0]] as const) {
      // SI units, as every size the harness prints (src/util/bytes.ts): '20' GB was 21.5 GB printed.
      assert.equal(spill(value), mb * 1e6, value)
      assert.equal(cache(value), mb * 1e9, value)
    }
    for (const value of ['0x10', '-1', '1GB', 'NaN', '1e']) {
      assert.equal(spill(value), 'CONFIG_INVALID', value)
      assert.equal(cache(value), 'CONFIG_INVALID', value)
    }
    assert.equal(spill('Infinity'), Infinity)
    assert.equal(cache('Infinity'), 'CONFIG_INVALID', 'the graph cache needs a bound')
  })

  it('a sweep whose variants cannot be written under the harness home fails before calibrating, naming MOE_HARNESS_HOME', () => {
    const home = path.join(dir, 'home-blocked')
    fs.mkdirSync(home)
    fs.writeFileSync(path.join(home, 'variants'), 'a file where the variants folder goes')
    const cfg = path.join(dir, 'wanda.config.ts')
    fs.writeFileSync(cfg, fs.readFileSync(config, 'utf8').replace('"magnitude-pruning"', '{"method":"magnitude-pruning","params":{"score":"wanda"}}'))
    const r = runCli(['sweep', '--config', cfg, '--db', path.join(dir, 'blocked.sqlite')], { env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[FILE_ACCESS\]: Cannot prepare 1 variant\(s\) \(m magnitude-pruning r=0\.5\).*set MOE_HARNESS_HOME to a writable folder/)
    assert.equal(fs.existsSync(path.join(home, 'calibration')), false, 'no calibration ran')
  })

  it('eval --precision bfloat16 on the CPU fails before calibrating', () => {
    const home = path.join(dir, 'home-bf16')
    const r = runCli(['eval', '--model', model, '--method', 'magnitude-pruning', '--param', 'score=wanda', '--ratio', '0.5', '--precision', 'bfloat16', '--tasks', 'brown-cloze', '--limit', '4'], { env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: --precision bfloat16 needs --device cuda/)
    assert.equal(fs.existsSync(path.join(home, 'calibration')), false, 'no calibration ran')
  })
})
