// Review 8: `score --ids "$A,$B,$C"` with one variable empty ("1,,3" or "1,2,") scored the other ids as
// if the sequence were shorter, without a word: an empty element is a lost id, not a separator
// to skip. It is now refused naming its position.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('score --ids with an empty element', () => {
  it('is refused naming the element', () => {
    for (const [ids, position] of [['1,,3', 2], ['1,2,', 3], [',1,2', 1]] as const) {
      const r = runCli(['score', '--model', model.dir, '--ids', ids], { env })
      assert.equal(r.status, 1, r.stderr)
      assert.equal(r.stderr.trim(), `error [INVALID_ARGUMENT]: --ids '${ids}': element ${position} is empty (an id lost, e.g. an unset variable); pass ids like 1,2,3.`)
    }
  })

  it('spaces around ids are still fine', () => {
    const r = runCli(['score', '--model', model.dir, '--ids', '1, 2, 3', '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(lastJson(r.stdout).tokens, [1, 2, 3])
  })
})
