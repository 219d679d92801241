// Fresh-user trial 4: `eval --allow-nonfinite` on a model whose outputs are NaN printed
// "brown-cloze acc 0.0000 ± 0.0000" and exited 0 (argmax over NaN picks the first choice), while a
// sweep fails the same cell with NUMERIC_FAILURE. Now eval fails alike; a model whose NaN weights never
// reach an output is still scored.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { poisonTensors } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const tiny = (name: string, seed: number) => writeTinyCheckpoint(path.join(dir, name), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed })

describe('eval --allow-nonfinite', () => {
  it('a model whose every output is NaN fails with NUMERIC_FAILURE naming the task, not acc 0', () => {
    const broken = tiny('all-nan', 82)
    poisonTensors(path.join(broken.dir, 'model.safetensors'), ['model.norm.weight']) // every logit NaN
    for (const tasks of ['brown-cloze', 'brown-perplexity']) {
      const r = runCli(['eval', '--model', broken.dir, '--tasks', tasks, '--limit', '3', '--allow-nonfinite'], { env })
      assert.equal(r.status, 1, r.stdout + r.stderr)
      assert.match(r.stderr, new RegExp(`error \\[NUMERIC_FAILURE\\]: ${tasks}: .*(3 of 3 documents have non-finite log-likelihoods|metric \\w+ is NaN).*--allow-nonfinite`))
      assert.doesNotMatch(r.stdout, /\| acc/, 'no results table')
    }
  })

  it('NaN weights that never reach an output (an unused embedding row) still score', () => {
    const model = tiny('nan-row', 81)
    const file = path.join(model.dir, 'model.safetensors')
    const buf = fs.readFileSync(file)
    const len = Number(buf.readBigUInt64LE(0))
    const header = JSON.parse(buf.subarray(8, 8 + len).toString())
    const [vocab, hidden] = header['model.embed_tokens.weight'].shape as [number, number]
    const row = 8 + len + header['model.embed_tokens.weight'].data_offsets[0] + 4 * hidden * (vocab - 1) // the last token id, never produced by the texts
    buf.writeFloatLE(NaN, row)
    fs.writeFileSync(file, buf)
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '3', '--allow-nonfinite', '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const acc = JSON.parse(r.stdout.trim().split('\n').at(-1)!).results['brown-cloze'].acc
    assert.ok(Number.isFinite(acc) && acc >= 0 && acc <= 1)
  })
})
