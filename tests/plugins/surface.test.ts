// Plugins (methods/*.ts, tasks/*.ts and their shared helpers) import only the public surface
// src/index.ts (and files of their own folder), so the harness's internals can move freely.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import * as surface from '../../src/index.ts'
import type { EnumParam, ParamValues } from '../../src/index.ts'
import { ROOT } from '../helpers/cli.ts'

function pluginFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap(e =>
    e.isDirectory() && e.name !== 'data' ? pluginFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [])
}

describe('plugin surface', () => {
  it('methods and tasks import only src/index.ts or their own folder', () => {
    const files = [...pluginFiles('methods'), ...pluginFiles('tasks')]
    assert.ok(files.length > 20)
    const offending: string[] = []
    for (const file of files) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8')
      for (const m of text.matchAll(/\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g)) {
        const spec = m[1] ?? m[2]!
        const target = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec))
        const pluginRoot = file.split(path.sep)[0]
        if (target === path.join('src', 'index.ts') || (spec.startsWith('.') && target.startsWith(pluginRoot + path.sep))) continue
        offending.push(`${file}: ${spec}`)
      }
    }
    assert.deepEqual(offending, [])
  })

  it('exports what plugin authors use: typed parameter values, neurons kept, Python string helpers', () => {
    const values: ParamValues<{ mode: EnumParam<'a' | 'b'> }> = { mode: 'b' }
    assert.equal(values.mode, 'b')
    assert.equal(surface.neuronsKept(0.7, 6), 5)
    assert.equal(surface.pyStrip('\u001f x \u0085'), 'x')
    assert.equal(typeof surface.defineTask, 'function')
  })
})
