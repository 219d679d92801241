// Review 8 (issue 10 §5, long contexts): `eval --max-length N` with N past the model's context
// (max_position_embeddings) scored rolling windows of up to N tokens and token-perplexity windows of
// min(2048, N), positions past the context by rotary extrapolation, without a word: the reported
// token_perplexity changed (here windows of 2048 instead of 512) and nothing said why. `score` warns
// in the same case; eval now does too, and is silent at or below the context.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
// max_position_embeddings 512 (the helper's default).
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 5 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const evalAt = (maxLength?: string) => {
  const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-perplexity', '--limit', '6', '--json', ...(maxLength ? ['--max-length', maxLength] : [])], { env })
  assert.equal(r.status, 0, r.stderr)
  return { stderr: r.stderr, json: lastJson(r.stdout) }
}

describe('eval --max-length past the model context', () => {
  it('warns, naming the context, and the token perplexity it reports is not the default one', () => {
    const past = evalAt('4096')
    const warnings = past.stderr.split('\n').filter(l => l.startsWith('warning: --max-length'))
    assert.deepEqual(warnings, ["warning: --max-length 4096 is longer than the model's context (max_position_embeddings 512): rolling windows of up to 4096 tokens and token-perplexity windows of 2048 tokens are scored past it as transformers would (rotary extrapolation). Omit --max-length, or pass at most 512, for numbers comparable with lm-eval's default."])
    const atContext = evalAt()
    assert.equal(atContext.json.config.max_length, 512)
    assert.equal(past.json.config.max_length, 4096)
    assert.notEqual(past.json.results['brown-perplexity'].token_perplexity, atContext.json.results['brown-perplexity'].token_perplexity)
    assert.doesNotMatch(atContext.stderr, /warning: --max-length/)
  })

  it('names token-perplexity windows only for tasks that cut them', () => {
    const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '2', '--max-length', '4096'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /^warning: --max-length 4096 is longer than the model's context \(max_position_embeddings 512\): requests of up to 4096 tokens are scored past it/m)
  })

  it('says nothing at or below the context', () => {
    for (const n of ['512', '128']) assert.doesNotMatch(evalAt(n).stderr, /warning: --max-length/)
  })
})
