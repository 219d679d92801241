// writeSafetensors writes every byte or throws: fs.writeSync returns fewer bytes than asked on a nearly
// full disk or past a file-size limit, with no error until the next call, so a file whose last tensor
// was cut short was renamed into place whole-looking-but-truncated (found by a fresh-user trial: a
// method's stored edits on a full harness home failed later as "truncated or corrupt" instead of
// "disk full"); and one call per tensor refused tensors over 2 GiB (ERR_OUT_OF_RANGE).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { readAll, readSafetensorsHeader, readTensorBytes, writeAll, writeSafetensors } from '../../src/model/safetensors.ts'
import { fileError } from '../../src/util/fileErrors.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)

describe('writeSafetensors writes whole files or none', () => {
  it('writeAll writes a buffer larger than one chunk completely, in order, at the file position or a given one', () => {
    const file = path.join(dir, 'chunks.bin')
    const data = bytes(10_000, 7)
    const fd = fs.openSync(file, 'w')
    try {
      writeAll(fd, data.subarray(0, 3), { chunk: 4096 })
      writeAll(fd, data.subarray(3), { chunk: 999 }) // 11 chunks, the last one short
      // At a position (as graphStore's derived.bin appends at aligned offsets): past the end, in chunks.
      writeAll(fd, data.subarray(0, 5000), { position: 12_000, chunk: 700 })
    } finally {
      fs.closeSync(fd)
    }
    const back = new Uint8Array(fs.readFileSync(file))
    assert.equal(back.length, 17_000)
    assert.deepEqual(back.subarray(0, 10_000), data)
    assert.deepEqual(back.subarray(10_000, 12_000), new Uint8Array(2000))
    assert.deepEqual(back.subarray(12_000), data.subarray(0, 5000))

    // readAll, its counterpart (reads over 2 GiB are refused in one call): in chunks, at a position.
    const rfd = fs.openSync(file, 'r')
    try {
      const buf = new Uint8Array(5000)
      assert.equal(readAll(rfd, buf, 12_000, 333), 5000)
      assert.deepEqual(buf, data.subarray(0, 5000))
      assert.equal(readAll(rfd, new Uint8Array(100), 16_950, 7), 50) // the end of the file
    } finally {
      fs.closeSync(rfd)
    }
  })

  it('a tensor cut short by the file-size limit throws EFBIG and leaves no file or temp', () => {
    const file = path.join(dir, 'limited.safetensors')
    // 64 KiB limit; the last (only) tensor is 96 KiB: the first write of it is short, without an error.
    const script = `
      import { writeSafetensors } from ${JSON.stringify(path.join(ROOT, 'src/model/safetensors.ts'))}
      try {
        writeSafetensors(${JSON.stringify(file)}, { w: { dtype: 'F32', shape: [24 * 1024], data: new Uint8Array(96 * 1024).fill(3) } })
        console.log(JSON.stringify({ threw: null }))
      } catch (e) {
        console.log(JSON.stringify({ threw: e.code ?? e.message }))
      }`
    const r = spawnSync('bash', ['-c', `ulimit -f 64; exec "${process.execPath}" --import tsx --input-type=module -e '${script.replace(/'/g, `'\\''`)}'`], { cwd: ROOT, encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { threw: 'EFBIG' })
    assert.deepEqual(fs.readdirSync(dir).filter(f => f.startsWith('limited')), [])
    assert.match(fileError(Object.assign(new Error('x'), { code: 'EFBIG' }), file, 'store edits').message, /largest file allowed.*ulimit -f/)
  })

  it('without a limit the same file reads back whole', () => {
    const file = path.join(dir, 'whole.safetensors')
    const data = bytes(96 * 1024, 3)
    writeSafetensors(file, { w: { dtype: 'F32', shape: [data.length / 4], data } })
    const [entry] = readSafetensorsHeader(file)
    assert.equal(entry.name, 'w')
    assert.deepEqual(new Uint8Array(readTensorBytes(entry)), data)
  })
})
