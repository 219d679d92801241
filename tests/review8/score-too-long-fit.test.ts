// Review 8 (issue 10 §5): `score` refused a text too long for the memory available with "score a shorter
// text (or the text in pieces)", naming no length, where eval's refusal names the --max-length that fits;
// a researcher had to guess how short. It now names the most tokens one sequence can have here.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { LONG_TEXT, writeLongContextModel } from '../helpers/longContext.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('score: a text too long for the memory available', () => {
  it('names the most tokens that fit, consistent with a need linear in the length', () => {
    const dir = tmpDir()
    const model = writeLongContextModel(dir)
    const text = path.join(dir, 'page.txt')
    fs.writeFileSync(text, LONG_TEXT)
    const r = runCli(['score', '--model', model.dir, '--text-file', text], { env: { MOE_HARNESS_HOME: path.join(dir, 'home') }, timeoutMs: 120_000 })
    assert.equal(r.status, 1, r.stderr)
    const m = /^error \[SEQUENCE_TOO_LONG\]: Scoring (\d+) tokens as one sequence needs about ([\d.]+) GB \((?:onnxruntime's session state [\d.]+ [kMG]B; )?activations grow with the length\), more than 85% of the ([\d.]+) GB available: score at most (\d+) tokens at a time \(a shorter text, or the text in pieces\), or free memory\.$/m.exec(r.stderr)
    assert.ok(m, r.stderr)
    const [tokens, needGb, availableGb, most] = m.slice(1).map(Number) as [number, number, number, number]
    const linear = tokens * (0.85 * availableGb) / needGb
    assert.ok(most < tokens && Math.abs(most - linear) / linear < 0.1, `at most ${most} tokens vs ${Math.round(linear)} at a linear need`)
  })
})
