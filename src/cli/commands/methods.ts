import path from 'node:path'
import type { Command } from 'commander'
import { fail } from '../../errors.ts'
import { paramValuesText } from '../../methods/paramText.ts'
import { loadAllMethods, methodNames, RESERVED_METHOD_NAMES } from '../../methods/registry.ts'
import { METHODS_DIR, ROOT } from '../../paths.ts'
import { createNewFiles } from '../../util/outputPaths.ts'

export function registerMethods(program: Command): void {
  program
    .command('methods')
    .description('List the sparsification methods with their family, parameters and defaults.')
    .option('--json', 'print the list as JSON')
    .action(async (flags: { json?: boolean }) => {
      const methods = await loadAllMethods()
      if (flags.json) {
        process.stdout.write(JSON.stringify(methods.map(m => ({ name: m.name, family: m.family, description: m.description, params: m.params, reference: m.reference }))) + '\n')
        return
      }
      for (const m of methods) {
        process.stdout.write(`${m.name}  (${m.family})\n  ${m.description}\n`)
        for (const [k, spec] of Object.entries(m.params)) {
          const text = paramValuesText(k, spec)
          const values = text ? ` ${text}` : ''
          process.stdout.write(`    --param ${k}=${String(spec.default)}${values}  ${spec.description}\n`)
        }
        process.stdout.write('\n')
      }
    })

  program
    .command('new-method <name>')
    .description('Scaffold methods/<name>.ts (a working method) and tests/methods/<name>.test.ts.')
    .action((name: string) => {
      if (!/^[a-z][a-z0-9-]*$/.test(name)) fail('INVALID_ARGUMENT', `Method names are kebab-case (letters, digits, dashes), e.g. my-pruning; got '${name}'.`)
      if (methodNames().includes(name)) fail('INVALID_ARGUMENT', `methods/${name}.ts already exists (nothing was written); choose another name, or edit that file.`)
      if (RESERVED_METHOD_NAMES.includes(name)) fail('INVALID_ARGUMENT', `'${name}' is reserved (the leaderboard's label for the unedited model); choose another name.`)
      const file = path.join(METHODS_DIR, `${name}.ts`)
      const test = path.join(ROOT, 'tests', 'methods', `${name}.test.ts`)
      // Never overwrites: an existing method or test file is refused, and nothing is created.
      createNewFiles([
        { file, content: methodTemplate(name), shown: `methods/${name}.ts` },
        { file: test, content: testTemplate(name), shown: `tests/methods/${name}.test.ts` },
      ])
      process.stdout.write(`created ${path.relative(process.cwd(), file)} and ${path.relative(process.cwd(), test)}\n` +
        `try it: moe-harness eval --model models/tiny-moe --method ${name} --ratio 0.25\n`)
    })
}

function methodTemplate(name: string): string {
  return `import { checkUniformRemoval, defineMethod, p, removeLowestPerLayer } from '../src/index.ts'

// A working starting point: removes, in every MoE layer, the experts with the smallest routed-token
// count. Replace the score with your own; the harness handles calibration, caching and scoring.
export default defineMethod({
  name: '${name}',
  description: 'Describe what the method removes or changes, and how it ranks experts.',
  family: 'expert-pruning',
  params: {
    ratio: p.ratio({ description: 'share of routed experts removed per layer: floor(ratio · E)' }),
  },
  needs: ['routing'],
  validate: (params, layout) => checkUniformRemoval(params.ratio, layout),
  apply({ params, layout, stats, experts }) {
    const scores = layout.layers.map(layer => stats.routing(layer.index).count)
    return { achievedRatio: removeLowestPerLayer(layout, experts, params.ratio, scores) }
  },
})
`
}

function testTemplate(name: string): string {
  return `// Method-specific checks for ${name}; the shared contract suite (tests/methods/contract.test.ts) runs on it too.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { loadMethod } from '../../src/methods/registry.ts'

it('${name} loads and declares a ratio', async () => {
  const method = await loadMethod('${name}')
  assert.equal(method.name, '${name}')
  assert.equal(method.params.ratio.type, 'number')
})
`
}
