// Bad command-line flags: each is refused before any model is built.
import type { MalformedCase } from './types.ts'

const ARG = 'INVALID_ARGUMENT'

export const cliFlagCases: MalformedCase[] = [
  { name: 'flag-unknown-option', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--text', 'hi', '--temperature', '0.5'], code: 'USAGE', message: /unknown option '--temperature'/ },
  { name: 'flag-unknown-command', setup: () => ['evaluate', '--model', 'x'], code: 'USAGE', message: /unknown command 'evaluate'/ },
  { name: 'flag-missing-required', setup: () => ['score', '--text', 'hi'], code: 'USAGE', message: /--model/ },
  { name: 'flag-limit-negative', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--limit', '-3'], code: [ARG, 'USAGE'], message: /--limit/ },
  { name: 'flag-limit-not-a-number', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--limit', 'ten'], code: ARG, message: /--limit.*ten/ },
  { name: 'flag-sample-fraction', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--sample', '2.5'], code: ARG, message: /--sample/ },
  { name: 'flag-limit-and-sample', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--limit', '2', '--sample', '2'], code: ARG, message: /--limit or --sample/ },
  { name: 'flag-batch-tokens-zero', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--limit', '2', '--batch-tokens', '0'], code: ARG, message: /--batch-tokens/ },
  { name: 'flag-unknown-method', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--method', 'frequency-prunning', '--ratio', '0.25'], code: 'UNKNOWN_NAME', message: /frequency-prunning.*frequency-pruning/ },
  { name: 'flag-ratio-above-one', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--method', 'frequency-pruning', '--ratio', '1.5'], code: ['METHOD_INVALID', ARG], message: /ratio/ },
  { name: 'flag-unknown-param', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--method', 'frequency-pruning', '--ratio', '0.25', '--param', 'scoope=global'], code: ['METHOD_INVALID', 'UNKNOWN_NAME', ARG], message: /scoope/ },
  { name: 'flag-param-no-equals', setup: (_d, fx) => ['eval', '--model', fx.baseModel, '--method', 'frequency-pruning', '--param', 'scope'], code: ['METHOD_INVALID', ARG], message: /scope/ },
  { name: 'flag-device-unknown', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--text', 'hi', '--device', 'tpu'], code: [ARG, 'DEVICE_UNAVAILABLE', 'USAGE'], message: /tpu/ },
  { name: 'flag-mask-experts-out-of-range', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--text', 'hi', '--mask-experts', '0:9'], code: ['HOOK_INVALID', ARG], message: /9/ },
  { name: 'flag-mask-experts-garbage', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--text', 'hi', '--mask-experts', 'all of them'], code: ['HOOK_INVALID', ARG], message: /all of them|mask-experts/ },
  { name: 'flag-score-nothing-to-score', setup: (_d, fx) => ['score', '--model', fx.baseModel], code: ARG, message: /--text|--ids/ },
  { name: 'flag-ids-not-numbers', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--ids', '1,two,3'], code: [ARG, 'TOKEN_OUT_OF_RANGE'], message: /two|--ids/ },
  { name: 'flag-ids-beyond-vocab', setup: (_d, fx) => ['score', '--model', fx.baseModel, '--ids', '1,99999'], code: ['TOKEN_OUT_OF_RANGE', ARG], message: /99999/ },
  { name: 'flag-shard-out-of-range', setup: (d, fx) => ['sweep', '--config', fx.config(d, { models: { tiny: fx.baseModel }, ratios: [0], tasks: ['brown-cloze'] }), '--shard', '5/4'], code: [ARG, 'HARNESS_CONFIG_INVALID'], message: /5\/4|--shard/ },
  { name: 'flag-workers-zero', setup: (d, fx) => ['sweep', '--config', fx.config(d, { models: { tiny: fx.baseModel }, ratios: [0], tasks: ['brown-cloze'] }), '--workers', '0'], code: ARG, message: /--workers/ },
  { name: 'flag-export-no-output', setup: (d, fx) => ['export', '--db', fx.harnessDb(`${d}/r.sqlite`)], code: ARG, message: /--csv|--json/ },
  { name: 'flag-cache-older-than-garbage', setup: () => ['cache', 'prune', '--variants', '--older-than', 'a week'], code: ARG, message: /--older-than 'a week' is not a duration.*d \(days\)/ },
  { name: 'flag-cache-older-than-no-area', setup: () => ['cache', 'prune', '--older-than', '7d'], code: ARG, message: /needs an area: add --variants, --graphs, --calibration or --all/ },
  { name: 'flag-cache-keep-store-missing', setup: () => ['cache', 'prune', '--all', '--keep-store', 'nope.sqlite'], code: ARG, message: /--keep-store nope\.sqlite does not exist/ },
  { name: 'flag-cache-keep-store-foreign', setup: (d, fx) => ['cache', 'prune', '--all', '--keep-store', fx.foreignDb(`${d}/notes.sqlite`)], code: 'STORE_NOT_HARNESS', message: /notes\.sqlite/ },
]
