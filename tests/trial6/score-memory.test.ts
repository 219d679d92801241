// `score` sends the whole text through the graph as one sequence. 16,000 ids on the DeepSeek-V2-Lite
// config at tiny width (163,840-token context) passed 8.7 GB of RSS and kept growing, with no word;
// a longer text gets the process (or its neighbours) killed by the kernel. It is now refused when
// the pool's memory rule (src/pool/memoryFit.ts) says one pass does not fit. (Since attention and the
// head work in blocks of rows at long sequences, those 16,000 ids score in 1.9 GB: the refusal is
// for a text some twenty times longer, or a machine with less memory.)
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { REAL, tinyWidth } from '../../bench/syntheticCheckpoint.ts'
import { checkScoreFits } from '../../src/cli/commands/score.ts'
import { parseModelSpec } from '../../src/model/modelSpec.ts'
import { estimateWorkerBytes } from '../../src/pool/memoryFit.ts'

const spec = parseModelSpec({ ...tinyWidth(REAL.deepseek!.config), num_hidden_layers: 2 })
const GB = 1e9

describe('score: one sequence that does not fit in memory', () => {
  it('is SEQUENCE_TOO_LONG naming the tokens, the memory needed and the memory available', () => {
    checkScoreFits(spec, 16_000, 1e6, 24 * GB)
    assert.throws(() => checkScoreFits(spec, 400_000, 1e6, 8 * GB), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'SEQUENCE_TOO_LONG')
      const need = (1e6 + estimateWorkerBytes(spec, 1, 400_000)) / GB
      assert.ok(e.message.includes(`Scoring 400000 tokens as one sequence needs about ${need.toFixed(1)} GB`), e.message)
      assert.match(e.message, /of the 8\.00 GB available: score at most \d+ tokens at a time \(a shorter text/)
      return true
    })
  })

  it('passes at the papers\' 2048 tokens, and counts the weights', () => {
    checkScoreFits(spec, 2048, 1e6, 24 * GB)
    const activations = estimateWorkerBytes(spec, 1, 2048)
    assert.throws(() => checkScoreFits(spec, 2048, 24 * GB, 24 * GB), /weights 24\.0 GB/)
    checkScoreFits(spec, 2048, 0, Math.ceil(activations / 0.85) + 1)
  })

  it("counts onnxruntime's state per weight tensor (memoryFit.ts sessionBytes: 1.24 GB for a 48 x 128-expert model, whatever its width)", () => {
    const available = Math.ceil((estimateWorkerBytes(spec, 1, 2048) + 0.5 * GB) / 0.85)
    checkScoreFits(spec, 2048, 0, available)
    assert.throws(() => checkScoreFits(spec, 2048, 0, available, 1 * GB), /needs about \S+ GB \(onnxruntime's session state 1\.00 GB; activations grow with the length\)/)
  })
})
