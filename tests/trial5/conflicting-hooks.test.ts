// Fresh-user trial 5: eval's direct hooks next to --method. Found: `--method neuron-top-k --ratio 0.5
// --neuron-topk 0.9` scored keep 0.9 (the flag replaced the method's share) and reported the result as
// neuron-top-k ratio 0.5; --json never said that --mask-experts / --neuron-topk changed the model.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const env = { MOE_HARNESS_HOME: path.join(tmpDir(), 'home') }

function evalJson(extra: string[]) {
  const r = runCli(['eval', '--model', 'models/tiny-moe', '--tasks', 'brown-perplexity', '--limit', '4', '--json', ...extra], { env })
  assert.equal(r.status, 0, r.stderr)
  return lastJson(r.stdout)
}
const ppl = (out: any) => out.results['brown-perplexity'].word_perplexity as number

describe('hook flags with --method', () => {
  it('--neuron-topk that would replace the keep share of the method is refused', () => {
    const r = runCli(['eval', '--model', 'models/tiny-moe', '--tasks', 'brown-perplexity', '--limit', '4', '--method', 'neuron-top-k', '--ratio', '0.5', '--neuron-topk', '0.9'], { env })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[INVALID_ARGUMENT\]: --neuron-topk 0\.9 would replace the share of neurons method neuron-top-k keeps \(0\.5 in layer 0\)/)
    assert.equal(r.stdout, '')
  })

  it('the flag alone is the same model as the method; --json names the hooks that were added', () => {
    const method = evalJson(['--method', 'neuron-top-k', '--ratio', '0.5'])
    const flag = evalJson(['--neuron-topk', '0.5'])
    assert.equal(ppl(flag), ppl(method))
    assert.equal(flag.config.neuron_topk, 0.5)
    assert.equal(method.config.neuron_topk, undefined)
    const masked = evalJson(['--method', 'neuron-top-k', '--ratio', '0.5', '--mask-experts', '0:1'])
    assert.equal(masked.config.mask_experts, '0:1')
    assert.equal(masked.config.method, 'neuron-top-k')
    assert.notEqual(ppl(masked), ppl(method))
  })
})
