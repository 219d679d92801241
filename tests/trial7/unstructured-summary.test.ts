// Fresh-user trial 7: eval's variant line says how much of the experts unstructured pruning zeroed.
// Found: `eval --method magnitude-pruning --param score=wanda --ratio 0.5` printed "expert params 100.0%"
// and nothing else about the weights, as if nothing had been pruned: zeros are stored densely, so the
// stored count is unchanged. The run page says "stored parameters" and "non-zero parameters"; the
// line now uses the same terms.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', layers: 2, experts: 4, topK: 2, hidden: 16, ffn: 8, seed: 17 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const evalWith = (...method: string[]) => runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '2', '--threads', '1', '--json',
  '--calibration-sequences', '4', '--calibration-length', '16', ...method], { env })
const line = (stderr: string) => stderr.split('\n').find(l => l.includes('achieved ratio')) ?? assert.fail(`no variant line in ${stderr}`)

describe("eval's variant line", () => {
  for (const score of ['wanda', 'magnitude']) {
    it(`magnitude-pruning (score=${score}) shows the non-zero share of the expert weights, and that zeros are stored densely`, () => {
      const r = evalWith('--method', 'magnitude-pruning', '--param', `score=${score}`, '--ratio', '0.5')
      assert.equal(r.status, 0, r.stderr)
      const shown = line(r.stderr)
      const config = lastJson(r.stdout).config
      // Every expert weight is targeted, so the method's achieved ratio is the share it zeroed.
      assert.ok(config.achieved_ratio > 0.4, `achieved ${config.achieved_ratio}`)
      const nonzero = (100 * (1 - config.achieved_ratio)).toFixed(1)
      assert.match(shown, new RegExp(`expert params 100\\.0% stored, ${nonzero.replace('.', '\\.')}% non-zero \\(unstructured: zeros are stored densely, so memory and active params/token are unchanged\\)`))
    })
  }

  it('a method that removes experts shows the stored share only', () => {
    const r = evalWith('--method', 'frequency-pruning', '--ratio', '0.25')
    assert.equal(r.status, 0, r.stderr)
    const shown = line(r.stderr)
    assert.match(shown, /expert params 75\.0% stored, active params\/token /)
    assert.doesNotMatch(shown, /non-zero/)
  })
})
