// A config.json error said only "config.json: hidden_act 'gelu' is not supported", so a sweep over
// several models (or `eval` on a folder among many) did not say which model's file holds the field.
// Every config error from opening a checkpoint now names the file.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'config.json')
  const c = JSON.parse(fs.readFileSync(file, 'utf8'))
  edit(c)
  fs.writeFileSync(file, JSON.stringify(c))
}

describe('config.json errors name the file', () => {
  const root = tmpDir()
  const cases: [string, (c: Record<string, unknown>) => void, string, RegExp][] = [
    ['act', c => { c.hidden_act = 'gelu' }, 'CONFIG_UNSUPPORTED', /hidden_act 'gelu'/],
    ['rope', c => { c.rope_parameters = { rope_type: 'linear', factor: 2 } }, 'CONFIG_UNSUPPORTED', /rope_parameters\.rope_type 'linear'/],
    ['heads', c => { c.num_key_value_heads = 3 }, 'CONFIG_INVALID', /num_key_value_heads \(3\)/],
    ['arch', c => { c.architectures = ['MixtralForCausalLMX'] }, 'UNKNOWN_ARCHITECTURE', /MixtralForCausalLM/],
  ]
  for (const [name, edit, code, field] of cases) {
    it(`${name}: ${code} names ${name}/config.json and the field`, () => {
      const dir = path.join(root, name)
      writeTinyCheckpoint(dir, { family: 'mixtral', seed: 4 })
      editConfig(dir, edit)
      assert.throws(() => openCheckpoint(dir, { warn: () => {} }), (e: unknown) =>
        e instanceof HarnessError && e.code === code && e.message.startsWith(`${path.join(dir, 'config.json')}`) && field.test(e.message))
    })
  }
})
