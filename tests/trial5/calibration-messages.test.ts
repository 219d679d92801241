// A calibration error of a sweep names the config field to change beside the CLI flag: the source
// came from harness.config.ts, where "pass --calibration" alone does not say what to edit.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('calibration errors of a config', () => {
  it('a missing source file names calibration.source as well as --calibration', () => {
    const dir = tmpDir('moe-calib-msg-')
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { tiny: path.join(ROOT, 'models', 'tiny-moe') }, methods: ['frequency-pruning'], ratios: [0.25], tasks: ['brown-cloze'], subset: { limit: 2 },
      calibration: { source: 'no-such-corpus.jsonl' },
    })
    const r = runCli(['sweep', '--config', config, '--db', path.join(dir, 'results.sqlite')], { env: { ...process.env, MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /error \[CALIBRATION_FAILED\].*no-such-corpus\.jsonl does not exist; pass --calibration \(calibration\.source in harness\.config\.ts\) builtin, task:<name>, or a \.txt\/\.jsonl\/\.parquet file\./)
  })
})
