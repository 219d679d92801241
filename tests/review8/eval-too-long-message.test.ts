// Review 8 (issue 10 §5, long contexts): eval's refusal of a request too long for the memory available
// still said "attention grows with the square of its length", which has not been so since attention
// and the head work in blocks of rows (README "Large models and memory": memory grows about linearly;
// score's refusal was reworded in 1dbe302, eval's was not). The cap it names must then be consistent with
// a need linear in the length.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeLongContextModel, writeLongWikitext } from '../helpers/longContext.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('eval: SEQUENCE_TOO_LONG on a long document', () => {
  it('says activations grow with the length (not with its square) and names the --max-length that fits', () => {
    const dir = tmpDir()
    const model = writeLongContextModel(dir)
    const dataDir = writeLongWikitext(dir)
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'wikitext', '--data-dir', dataDir], { env: { MOE_HARNESS_HOME: path.join(dir, 'home') }, timeoutMs: 120_000 })
    assert.equal(r.status, 1, r.stderr)
    const m = /^error \[SEQUENCE_TOO_LONG\]: The longest request of these documents \(up to (\d+) tokens\) needs about ([\d.]+) GB scored alone \((?:onnxruntime's session state [\d.]+ [kMG]B; )?activations grow with the length\), more than 85% of the ([\d.]+) GB available\. .*--max-length (\d+) /m.exec(r.stderr)
    assert.ok(m, r.stderr)
    assert.doesNotMatch(r.stderr, /square/)
    const [tokens, needGb, availableGb, cap] = m.slice(1).map(Number) as [number, number, number, number]
    assert.ok(tokens > 300_000, `the page is one window: ${tokens} tokens`)
    // Linear growth: the cap is about the length whose share of the need fits in 85% (within the fixed part).
    const linearCap = tokens * (0.85 * availableGb) / needGb
    assert.ok(cap < tokens && Math.abs(cap - linearCap) / linearCap < 0.1, `--max-length ${cap} vs ${Math.round(linearCap)} at a linear need`)
  })
})
