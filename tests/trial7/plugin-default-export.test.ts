// Fresh-user trial 7: a plugin file that exports its method under a name instead of as the default
// export is refused naming what it does export (the message only said "must default-export").
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { loadPlugin } from '../../src/plugins/discover.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('a plugin without a default export', () => {
  it('is METHOD_INVALID naming the file and its named exports; the default-exported file loads', async () => {
    const dir = tmpDir()
    const body = "{ name: 'my-pruning', description: 'x.', family: 'expert-pruning', params: {} }"
    fs.writeFileSync(path.join(dir, 'my-pruning.ts'), `export const method = ${body}\nexport const helper = 1\n`)
    await assert.rejects(loadPlugin('method', dir, 'my-pruning', 'METHOD_INVALID'), (e: HarnessError) =>
      e.code === 'METHOD_INVALID' && e.message === `${path.join(dir, 'my-pruning.ts')} must default-export a method object (export default define…({...})); it exports 'helper', 'method': make the method its default export.`)
    const ok = tmpDir() // another folder: the module cache keeps the first file's module
    fs.writeFileSync(path.join(ok, 'my-pruning.ts'), `export default ${body}\n`)
    assert.equal((await loadPlugin<{ name: string }>('method', ok, 'my-pruning', 'METHOD_INVALID')).name, 'my-pruning')
  })
})
