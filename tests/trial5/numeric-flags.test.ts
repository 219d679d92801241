// Fresh-user trial 5: numeric flags that must be integers are refused otherwise. Found: `eval --seed x`
// ran with seed NaN (its subset stored as sample:5:seedNaN), `--calibration-seed x` keyed the
// calibration by null, and --max-length 40.5 / --batch-tokens 100.7 were used as fractional token counts.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const env = { MOE_HARNESS_HOME: path.join(tmpDir(), 'home') }
const evalArgs = ['eval', '--model', 'models/tiny-moe', '--tasks', 'brown-cloze']

describe('integer flags', () => {
  const cases: [extra: string[], message: RegExp][] = [
    [['--sample', '5', '--seed', 'x'], /--seed must be an integer, got 'x'/],
    [['--sample', '5', '--seed', '1.5'], /--seed must be an integer, got '1\.5'/],
    [['--limit', '5', '--method', 'reap', '--calibration-seed', 'abc'], /--calibration-seed must be an integer, got 'abc'/],
    [['--limit', '5', '--max-length', '40.5'], /--max-length must be a whole number of tokens, got '40\.5'/],
    [['--limit', '5', '--batch-tokens', '100.7'], /--batch-tokens must be a whole number of tokens, got '100\.7'/],
  ]
  for (const [extra, message] of cases) {
    it(extra.join(' '), () => {
      const r = runCli([...evalArgs, ...extra], { env })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, /^error \[INVALID_ARGUMENT\]: /m)
      assert.match(r.stderr, message)
      assert.equal(r.stdout, '')
    })
  }

  it('integer seeds in any spelling select the same documents (negative ones too)', () => {
    const run = (seed: string) => {
      const r = runCli([...evalArgs, '--sample', '6', '--seed', seed, '--json'], { env })
      assert.equal(r.status, 0, r.stderr)
      return lastJson(r.stdout)
    }
    const a = run('1000'), b = run('1e3'), c = run('-3')
    assert.equal(a.config.subset, 'sample:6:seed1000')
    assert.equal(b.config.subset, 'sample:6:seed1000')
    assert.deepEqual(b.results, a.results)
    assert.equal(c.config.subset, 'sample:6:seed-3')
    assert.equal(c['n-samples']['brown-cloze'].effective, 6)
  })
})
