// A shape key missing from config.json takes transformers' class default (a full-size model's), so a
// tiny checkpoint without 'hidden_size' was refused with "config.json implies [512,2048]": a number the
// file does not contain, and no word of the missing key.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

function withConfig(edit: (c: Record<string, unknown>) => void): string {
  const dir = writeTinyCheckpoint(path.join(tmpDir(), 'm'), { family: 'olmoe', seed: 5 }).dir
  const file = path.join(dir, 'config.json')
  const config = JSON.parse(fs.readFileSync(file, 'utf8'))
  edit(config)
  fs.writeFileSync(file, JSON.stringify(config))
  return dir
}

describe('a shape error from a defaulted config key', () => {
  it('names the missing key and the default it took', () => {
    const dir = withConfig(c => { delete c.hidden_size })
    assert.throws(() => openCheckpoint(dir), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'TENSOR_SHAPE')
      assert.match(e.message, /implies \[\d+,2048\]\. config\.json has no 'hidden_size': transformers' default was used \(hidden_size=2048;/)
      return true
    })
  })

  it('says nothing of defaults when config.json gives a wrong value itself', () => {
    const dir = withConfig(c => { c.hidden_size = 48 })
    assert.throws(() => openCheckpoint(dir), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'TENSOR_SHAPE')
      assert.doesNotMatch(e.message, /default/)
      assert.doesNotMatch(e.message, /implies {2}/)
      return true
    })
  })
})
