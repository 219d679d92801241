// `eval` scores rolling-window tasks in windows as long as the model's context (lm-eval's HF backend),
// and attention grew with the square of a window: a long document on a long-context model ran out of
// memory only after the method's calibration. The longest request that cannot fit even alone in its
// batch is now refused first (SEQUENCE_TOO_LONG naming the --max-length that fits). Attention and the
// head now work in blocks of rows at long sequences, so the need grows about linearly and the
// refusal comes at far longer windows.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { REAL, tinyWidth } from '../../bench/syntheticCheckpoint.ts'
import { checkEvalFits } from '../../src/cli/commands/eval.ts'
import { parseModelSpec } from '../../src/model/modelSpec.ts'
import { estimateWorkerBytes, float32WeightBytes, MEMORY_SAFETY, residentWeightBytes } from '../../src/pool/memoryFit.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeLongContextModel, writeLongWikitext } from '../helpers/longContext.ts'
import { tmpDir } from '../helpers/tmp.ts'

const GB = 1e9
const spec = parseModelSpec({ ...tinyWidth(REAL.deepseek!.config), num_hidden_layers: 2 })
const fitsIn = (tokens: number, available: number) => 1e6 + estimateWorkerBytes(spec, 1, tokens) <= MEMORY_SAFETY * available

describe('eval: a request too long to score in the memory available', () => {
  it('is refused naming the longest --max-length that fits, the need and the memory available', () => {
    checkEvalFits(spec, 16_000, 1e6, 24 * GB, { maxLengthGiven: false, floatWeights: false })
    assert.throws(() => checkEvalFits(spec, 400_000, 1e6, 8 * GB, { maxLengthGiven: false, floatWeights: false }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'SEQUENCE_TOO_LONG')
      const cap = Number(/--max-length (\d+)/.exec(e.message)?.[1])
      assert.ok(cap > 16_000 && fitsIn(cap, 8 * GB) && !fitsIn(cap + 1, 8 * GB), `--max-length ${cap} is the longest that fits`)
      assert.match(e.message, /up to 400000 tokens\) needs about [\d.]+ GB scored alone/)
      assert.match(e.message, /of the 8\.00 GB available\. Nothing was calibrated or scored/)
      assert.match(e.message, /lm-eval's HF backend uses the model's whole context/)
      return true
    })
  })

  it("passes at the papers' 2048 tokens; with no room even for one token it names no --max-length", () => {
    checkEvalFits(spec, 2048, 1e6, 24 * GB, { maxLengthGiven: false, floatWeights: false })
    assert.throws(() => checkEvalFits(spec, 2048, 30 * GB, 24 * GB, { maxLengthGiven: true, floatWeights: true }), (e: Error) => {
      assert.doesNotMatch(e.message, /--max-length/)
      assert.match(e.message, /weights 30\.0 GB held as float32, MOE_HARNESS_WEIGHTS=memory/)
      return true
    })
  })

  it('mapped weights are not counted (file pages: a checkpoint larger than memory scores, slowly); float32-resident ones are, twice', () => {
    const dir = tmpDir()
    const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, seed: 8 }).dir, { warn: () => {} })
    assert.equal(residentWeightBytes(ckpt, false), 0)
    assert.equal(residentWeightBytes(ckpt, true), 2 * float32WeightBytes(ckpt))
    assert.ok(float32WeightBytes(ckpt) > 0)
    // A 2048-token window fits beside weights that are only mapped, however large the checkpoint.
    checkEvalFits(spec, 2048, residentWeightBytes(ckpt, false), 1 * GB, { maxLengthGiven: false, floatWeights: false })
  })

  it('end to end: a 400,000-character document on a long-context model is refused before the method calibrates', () => {
    const dir = tmpDir()
    const model = writeLongContextModel(dir)
    const dataDir = writeLongWikitext(dir)
    const home = path.join(dir, 'home')
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'wikitext', '--data-dir', dataDir, '--method', 'reap', '--ratio', '0.25', '--calibration-sequences', '2', '--calibration-length', '16'], { env: { MOE_HARNESS_HOME: home }, timeoutMs: 120_000 })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /SEQUENCE_TOO_LONG/)
    assert.match(r.stderr, /--max-length \d+/)
    assert.ok(!fs.existsSync(path.join(home, 'calibration')), 'no calibration statistics were computed')
  })
})
