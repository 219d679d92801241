// oneSequenceFit finds the longest sequence that fits by bisection, which is right only if the need
// never falls as the sequence lengthens. eval names that length as the --max-length to use, and every
// window up to it must fit. Counting whole query rows per attention pass (floor(2^26 / (H·T))) made
// the need a sawtooth past one pass (up to 90 MB down at ~116k tokens on Qwen3-30B-A3B's config): the
// named length had a shorter one that did not fit for about a third of the memory sizes tried.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { REAL, tinyWidth } from '../../bench/syntheticCheckpoint.ts'
import { parseModelSpec } from '../../src/model/modelSpec.ts'
import { estimateWorkerBytes, MEMORY_SAFETY, oneSequenceFit } from '../../src/pool/memoryFit.ts'

const specs = {
  'deepseek tiny': parseModelSpec({ ...tinyWidth(REAL.deepseek!.config), num_hidden_layers: 2 }),
  'qwen3 tiny': parseModelSpec({ ...tinyWidth(REAL.qwen3!.config), num_hidden_layers: 2 }),
  qwen3: parseModelSpec(REAL.qwen3!.config),
}

describe('oneSequenceFit: the need never falls as the sequence lengthens', () => {
  for (const [name, spec] of Object.entries(specs)) {
    it(`${name}: non-decreasing up to 60,000 tokens, and the longest fitting length has every shorter one fitting`, () => {
      const N = 60_000
      const need = new Float64Array(N + 1)
      for (let t = 1; t <= N; t++) {
        need[t] = estimateWorkerBytes(spec, 1, t)
        assert.ok(need[t]! >= need[t - 1]!, `need at ${t} tokens ${need[t]} < at ${t - 1}: ${need[t - 1]}`)
      }
      for (let i = 1; i < 40; i++) {
        const available = (need[1]! + (need[N]! - need[1]!) * (i / 40)) / MEMORY_SAFETY
        const { fits, longestFitting } = oneSequenceFit(spec, N, 0, available)
        assert.equal(fits, false)
        let longest = 0
        while (longest < N && need[longest + 1]! <= MEMORY_SAFETY * available) longest++
        assert.equal(longestFitting, longest, `available ${available}`)
      }
    })
  }
})
