// Broken harness.config.ts files given to `sweep`.
import fs from 'node:fs'
import path from 'node:path'
import type { Fixtures, MalformedCase } from './types.ts'

/** A small valid config for the base model; `patch` breaks one thing. */
function sweepWith(dir: string, fx: Fixtures, patch: Record<string, unknown>): string[] {
  const config = { models: { tiny: fx.baseModel }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite', ...patch }
  return ['sweep', '--config', fx.config(dir, config)]
}

function sweepWithText(dir: string, text: string): string[] {
  fs.writeFileSync(path.join(dir, 'harness.config.ts'), text)
  return ['sweep', '--config', path.join(dir, 'harness.config.ts')]
}

const CFG = 'HARNESS_CONFIG_INVALID'

export const harnessConfigCases: MalformedCase[] = [
  {
    name: 'hconfig-missing-file',
    setup: dir => ['sweep', '--config', path.join(dir, 'nope.config.ts')],
    code: CFG, message: /nope\.config\.ts does not exist/,
  },
  {
    name: 'hconfig-syntax-error',
    setup: dir => sweepWithText(dir, 'export default { models: { tiny: "x" },,, }\n'),
    code: CFG, message: /harness\.config\.ts/,
  },
  {
    name: 'hconfig-throws-on-load',
    setup: dir => sweepWithText(dir, 'throw new Error("boom from the config")\nexport default {}\n'),
    code: CFG, message: /harness\.config\.ts.*boom from the config/,
  },
  {
    name: 'hconfig-default-not-object',
    setup: dir => sweepWithText(dir, 'export default 42\n'),
    code: CFG, message: /harness\.config\.ts/,
  },
  {
    name: 'hconfig-unknown-key',
    setup: (dir, fx) => sweepWith(dir, fx, { ratio: [0.5] }),
    code: CFG, message: /ratio/,
  },
  {
    name: 'hconfig-ratio-out-of-range',
    setup: (dir, fx) => sweepWith(dir, fx, { ratios: [0, 1.5] }),
    code: CFG, message: /ratios/,
  },
  {
    name: 'hconfig-no-models',
    setup: (dir, fx) => sweepWith(dir, fx, { models: {} }),
    code: CFG, message: /models/,
  },
  {
    name: 'hconfig-limit-and-sample',
    setup: (dir, fx) => sweepWith(dir, fx, { subset: { limit: 2, sample: 3 } }),
    code: CFG, message: /limit or sample/,
  },
  {
    name: 'hconfig-workers-zero',
    setup: (dir, fx) => sweepWith(dir, fx, { pool: { workers: 0 } }),
    code: CFG, message: /pool\.workers/,
  },
  {
    name: 'hconfig-model-folder-missing',
    setup: (dir, fx) => sweepWith(dir, fx, { models: { tiny: './no-such-model' } }),
    code: ['CHECKPOINT_NOT_FOUND', CFG], message: /no-such-model/,
  },
  {
    name: 'hconfig-unknown-method',
    setup: (dir, fx) => sweepWith(dir, fx, { methods: ['reaap'] }),
    code: ['UNKNOWN_NAME', CFG], message: /reaap.*reap/,
  },
  {
    name: 'hconfig-unknown-task',
    setup: (dir, fx) => sweepWith(dir, fx, { tasks: ['brown-clozee'] }),
    code: ['UNKNOWN_NAME', CFG], message: /brown-clozee.*brown-cloze/,
  },
  {
    name: 'hconfig-bad-method-param',
    setup: (dir, fx) => sweepWith(dir, fx, { methods: [{ method: 'frequency-pruning', params: { scoope: 'global' } }] }),
    code: ['METHOD_INVALID', 'UNKNOWN_NAME', CFG], message: /scoope/,
  },
]
