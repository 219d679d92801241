// A method warns per expert (REAP: an expert no calibration token reached), which at real size is
// thousands of lines: the CLI prints the first SHOWN_WARNINGS and counts the rest, and --json keeps them all.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { SHOWN_WARNINGS } from '../../src/cli/methodOptions.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen3_moe', layers: 4, experts: 16, topK: 1, seed: 7 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('method warnings on the command line', () => {
  it('transform prints the first ones and the count of the rest; --json lists every one', () => {
    // 2 sequences of 4 tokens route at most 8 tokens per layer, so at least 8 of 16 experts per layer get none.
    const r = runCli(['transform', '--model', model.dir, '--method', 'reap', '--ratio', '0.5', '--calibration-sequences', '2', '--calibration-length', '4',
      '--threads', '1', '--out', path.join(dir, 'out'), '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const warnings: string[] = lastJson(r.stdout).warnings
    assert.ok(warnings.length >= 4 * 8, `${warnings.length} warnings`)
    assert.ok(warnings.every(w => /^layer \d+ expert \d+: no routed calibration tokens/.test(w)), warnings[0])
    const lines = r.stderr.split('\n').filter(l => l.startsWith('warning [method reap]: '))
    assert.equal(lines.length, SHOWN_WARNINGS + 1, r.stderr)
    assert.deepEqual(lines.slice(0, SHOWN_WARNINGS), warnings.slice(0, SHOWN_WARNINGS).map(w => `warning [method reap]: ${w}`))
    assert.equal(lines.at(-1), `warning [method reap]: ... and ${warnings.length - SHOWN_WARNINGS} more warnings (${warnings.length} in all: --json lists every one under "warnings")`)
  })
})
