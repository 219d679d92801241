// Review 8 (issue 10 §5): a --calibration-length past the model's context is refused (trial 6), but the
// refusal's reason was "its attention alone would need 40 GB per head" for 100,000 tokens: length² floats
// per head, untrue since calibration graphs compute attention in blocks of rows (one pass holds at most
// 2^26 scores; 52d966e). The reason given now is the one that holds: positions past the context are
// extrapolated, and the papers calibrate within it.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 6, dtype: 'BF16' })

describe('--calibration-length past the context', () => {
  it('is refused with a true reason and the longest length allowed, before any calibration', () => {
    const home = path.join(dir, 'home')
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--limit', '2', '--method', 'reap', '--ratio', '0.5', '--calibration-length', '100000'], { env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 1, r.stderr)
    assert.equal(r.stderr.trim(), `error [INVALID_ARGUMENT]: --calibration-length 100000 is longer than the context of ${model.dir} (max_position_embeddings 512 in its config.json): a calibration window must fit the model's context (positions past it would be scored by rotary extrapolation; the papers calibrate within it). Use at most 512, or leave it unset for the default min(2048, the model's context).`)
  })
})
