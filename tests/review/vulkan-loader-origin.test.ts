// Review of 586e7b9 (a missing Vulkan loader refuses --device webgpu before any work): the check
// dlopen'ed libvulkan.so.1 from Node, but Dawn opens it from inside libonnxruntime.so.1, whose RUNPATH
// is $ORIGIN, so glibc also searches onnxruntime's own folder (dlopen(3): the calling object's
// DT_RUNPATH). A loader placed there (a user without root copying libvulkan.so.1 beside onnxruntime)
// works for Dawn and was refused by the check.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { describe, it } from 'node:test'
import { vulkanLoaderMissing } from '../../src/ort/ort.ts'
import { tmpDir } from '../helpers/tmp.ts'

const ortDir = path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch)
const systemLoader = (() => {
  try {
    process.dlopen({ exports: {} }, 'libvulkan.so.1')
    return true
  } catch (e) {
    return !/cannot open shared object file/.test((e as Error).message)
  }
})()

describe('where the Vulkan loader is looked for', { skip: process.platform !== 'linux' && 'Linux only' }, () => {
  it("the premise: Dawn's library searches its own folder ($ORIGIN RUNPATH)", () => {
    const lib = fs.readFileSync(path.join(ortDir, 'libonnxruntime.so.1'))
    assert.ok(lib.includes('$ORIGIN'), 'libonnxruntime.so.1 has an $ORIGIN RUNPATH')
  })

  it('a loader beside onnxruntime counts as installed; none anywhere is missing', () => {
    const beside = tmpDir()
    fs.symlinkSync(path.join(ortDir, 'libonnxruntime.so.1'), path.join(beside, 'libvulkan.so.1')) // any ELF library: only where it is matters
    assert.equal(vulkanLoaderMissing(beside), undefined)
    if (systemLoader) return // this machine has a system loader: nothing is missing anywhere
    const empty = tmpDir()
    assert.match(vulkanLoaderMissing(empty) ?? '', /cannot open shared object file/)
  })
})
