// Fresh-user trial 4: `moe-harness methods` listed each parameter's default but not its bounds, so
// `--param ratio=1` or a plugin's `alpha=5` was learnt from the error. Numbers now show their range.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { runCli } from '../helpers/cli.ts'

it('methods lists the range of numeric parameters', () => {
  const r = runCli(['methods'])
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /\n {4}--param ratio=0\.25 \{0 <= r < 1\} {2}share of routed experts removed per layer/)
  assert.match(r.stdout, /--param score=count \{count\|softmax-mass\|gate-mass\}/, 'enums keep their values')
})
