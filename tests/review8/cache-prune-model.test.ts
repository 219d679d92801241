// Review 8 (issue 10, a researcher freeing a real-size model's variants): `cache prune --model DIR` with a
// DIR no variant folder names (a typo, a trailing path part, a file) said "nothing to remove" and exited
// 0, as if that model had no variants, with no word of which model folders the variants are of.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = path.join(dir, 'olmoe-small')
writeTinyCheckpoint(model, { family: 'olmoe', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 7 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const config = writeSweepConfig(path.join(dir, 'sweep.config.ts'), {
  models: { small: model }, methods: ['frequency-pruning'], ratios: [0.5], tasks: ['brown-agreement'], subset: { limit: 2 },
  calibration: { source: 'builtin', sequences: 2, length: 32, seed: 1 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite',
})
const swept = runCli(['sweep', '--config', config], { env, cwd: dir })
assert.equal(swept.status, 0, swept.stderr)
const variants = fs.readdirSync(path.join(dir, 'home', 'variants')).filter(n => /^[0-9a-f]{16}-[0-9a-f]{24}$/.test(n))
assert.equal(variants.length, 1, `one prepared variant folder: ${variants.join(', ')}`)

describe('cache prune --model', () => {
  it('names the model folders the variants are of, and the closest, when none is of the given folder', () => {
    const r = runCli(['cache', 'prune', '--model', path.join(dir, 'olmoe-smal'), '--yes'], { env, cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /removed 0 entries/)
    assert.match(r.stderr, new RegExp(`no variant folder under .* was prepared from ${path.join(dir, 'olmoe-smal')}; did you mean ${model}\\?`))
    assert.match(r.stderr, new RegExp(`variant folders here are of: ${model} \\(1\\)`))
    assert.ok(fs.existsSync(path.join(dir, 'home', 'variants', variants[0]!)), 'nothing removed')
  })

  it('says nothing of the kind when the folder is one the variants name (a trailing slash too)', () => {
    const r = runCli(['cache', 'prune', '--model', `${model}/`], { env, cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    assert.doesNotMatch(r.stderr, /no variant folder/)
    // Used in the last minute, so kept, but selected: it is listed as kept with its reason.
    assert.match(r.stdout, new RegExp(`variants/${variants[0]}`))
  })
})
