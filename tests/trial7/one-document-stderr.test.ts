// Fresh-user trial 7: an accuracy over one document has no standard error. Found: `eval --limit 1`
// printed "± NaN" (the JSON said null); lm-eval writes "N/A" when a metric has fewer than 2 items
// (lm_eval/evaluator_utils.py: `stderr_fn(items) if (stderr_fn and len(items) > 1) else "N/A"`).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { accuracyMetric } from '../../src/tasks/metrics.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('stderr of an accuracy over fewer than 2 documents', () => {
  it('is null (N/A); two documents give the Bessel-corrected value', () => {
    assert.equal(accuracyMetric([1]).stderr, null)
    assert.equal(accuracyMetric([]).stderr, null)
    assert.equal(accuracyMetric([1, 0]).stderr, 0.5) // sqrt(0.5 / 1) / sqrt(2)
  })

  it('eval --limit 1 prints N/A, not NaN', () => {
    const r = runCli(['eval', '--model', path.join(ROOT, 'models/tiny-moe'), '--tasks', 'brown-agreement', '--limit', '1'], { env: { MOE_HARNESS_HOME: tmpDir() } })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /\| brown-agreement \| 1 +\| 1 \| acc\* +\| ↑ \| [01]\.0000 \| +\| +N\/A \|/)
    assert.doesNotMatch(r.stdout, /NaN/)
  })
})
