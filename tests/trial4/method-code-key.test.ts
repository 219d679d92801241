// Fresh-user trial 4: a method's variant key covers the code the method runs, not only its file.
// Flipping the ranking in src/methods/helpers.ts (removeLowestPerLayer) left every variant id the same,
// so a sweep reported "36 already complete" and the leaderboard kept the old experts' scores.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copyProject } from '../helpers/projectCopy.ts'
import { moduleClosure, moduleFingerprint } from '../../src/identity/sourceFingerprint.ts'

describe('method code in the variant key', () => {
  it('moduleFingerprint follows relative imports transitively, skips type-only ones and package imports', () => {
    const dir = tmpDir()
    const write = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
      fs.writeFileSync(path.join(dir, rel), text)
    }
    write('methods/my-method.ts', [
      "import fs from 'node:fs'",
      "import type { Shape } from './lib/types.ts'",
      'import {',
      '  score,',
      "} from './lib/score.ts'",
      "export { helper } from './lib/helper'",
      "export type { Other } from './lib/other.ts'",
      "const later = () => import('./lib/lazy.js')",
      'export default { score, later, fs }',
    ].join('\n'))
    write('lib/types.ts', 'export type Shape = number\n')
    write('lib/other.ts', 'export type Other = string\n')
    write('methods/lib/types.ts', 'export type Shape = number\n')
    write('methods/lib/other.ts', 'export type Other = string\n')
    write('methods/lib/score.ts', "import { deep } from '../../shared/deep.ts'\nexport const score = (x: number) => deep(x)\n")
    write('methods/lib/helper.ts', 'export const helper = 1\n')
    write('methods/lib/lazy.ts', 'export const lazy = 2\n')
    write('shared/deep.ts', 'export const deep = (x: number) => x\n')
    const entry = path.join(dir, 'methods/my-method.ts')
    const rel = (files: string[]) => files.map(f => path.relative(dir, f)).sort()
    assert.deepEqual(rel(moduleClosure(entry).files), ['methods/lib/helper.ts', 'methods/lib/lazy.ts', 'methods/lib/score.ts', 'methods/my-method.ts', 'shared/deep.ts'])
    const before = moduleFingerprint(entry, dir)
    assert.equal(moduleFingerprint(entry, dir), before, 'deterministic')
    write('methods/lib/types.ts', 'export type Shape = string\n') // type-only: runs nothing
    assert.equal(moduleFingerprint(entry, dir), before)
    write('shared/deep.ts', 'export const deep = (x: number) => -x\n') // two imports away
    const afterDeep = moduleFingerprint(entry, dir)
    assert.notEqual(afterDeep, before)
    write('methods/lib/lazy.ts', 'export const lazy = 3\n') // dynamic import, .js specifier of a .ts file
    assert.notEqual(moduleFingerprint(entry, dir), afterDeep)
  })

  it('named imports through a barrel follow only the re-exports that provide them', () => {
    const dir = tmpDir()
    const write = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
      fs.writeFileSync(path.join(dir, rel), text)
    }
    write('methods/m.ts', "import { rank, type Config } from '../src/index.ts'\nexport default rank\n")
    write('src/index.ts', [
      "export { rank, other as renamed } from './helpers.ts'",
      "export { defineConfig } from './config.ts'",
      "export type { Config } from './types.ts'",
      "export * from './strings.ts'",
    ].join('\n'))
    write('src/helpers.ts', "import { fail } from './errors.ts'\nexport const rank = () => fail\nexport const other = 1\n")
    write('src/errors.ts', 'export const fail = 0\n')
    write('src/config.ts', 'export const defineConfig = 1\n')
    write('src/types.ts', 'export type Config = number\n')
    write('src/strings.ts', 'export const s = 1\n')
    const entry = path.join(dir, 'methods/m.ts')
    assert.deepEqual(moduleClosure(entry).files.map(f => path.relative(dir, f)).sort(),
      ['methods/m.ts', 'src/errors.ts', 'src/helpers.ts', 'src/index.ts', 'src/strings.ts'])
    const before = moduleFingerprint(entry, dir)
    write('src/config.ts', 'export const defineConfig = 2\n') // re-exported by the barrel, not imported by the method
    assert.equal(moduleFingerprint(entry, dir), before)
    write('src/errors.ts', 'export const fail = 1\n') // imported by the helper the method uses
    assert.notEqual(moduleFingerprint(entry, dir), before)
  })

  it("editing src/methods/helpers.ts changes reap's method hash; editing a CLI file does not", () => {
    // A copy of the project's source (node_modules linked), so the shared tree is never edited.
    const dir = tmpDir()
    copyProject(dir, ['src', 'methods', 'package.json'])
    const hash = (): string => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
        `import { methodFileHash } from ${JSON.stringify(path.join(dir, 'src/methods/registry.ts'))}; console.log(methodFileHash('reap'))`], { cwd: dir, encoding: 'utf8' })
      assert.equal(r.status, 0, r.stderr)
      return r.stdout.trim()
    }
    const first = hash()
    assert.match(first, /^[0-9a-f]{16}$/)
    const helpers = path.join(dir, 'src/methods/helpers.ts')
    const text = fs.readFileSync(helpers, 'utf8')
    assert.ok(text.includes('scores[li][g * size + i]'), 'removeLowestPerLayer reads the scores here')
    fs.writeFileSync(helpers, text.replace('scores[li][g * size + i]', '-scores[li][g * size + i]'))
    const flipped = hash()
    assert.notEqual(flipped, first, 'a changed ranking rule must change the variant key')
    for (const other of ['src/cli/main.ts', 'src/config/defineConfig.ts']) { // the second is re-exported by src/index.ts too
      fs.appendFileSync(path.join(dir, other), '\n// unrelated edit\n')
      assert.equal(hash(), flipped, `code the method does not run (${other}) leaves its variants alone`)
    }
  })
})
