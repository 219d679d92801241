// The pieces of `moe-harness cache` that need no harness home: sizes in words, durations, and the
// bytes a removal frees when files are hard-linked (counted against `du`).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { diskUsage, freedBytes, usageBytes } from '../../src/cache/diskUsage.ts'
import { formatBytes } from '../../src/util/bytes.ts'
import { parseDuration } from '../../src/cache/prune.ts'
import { HarnessError } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'

const du = (...paths: string[]) => Number(spawnSync('du', ['-s', '-B1', '-c', ...paths], { encoding: 'utf8' }).stdout.trim().split('\n').pop()!.split('\t')[0])

describe('cache units', () => {
  it('formatBytes: SI units, three significant digits', () => {
    assert.equal(formatBytes(0), '0 B')
    assert.equal(formatBytes(999), '999 B')
    assert.equal(formatBytes(1000), '1.00 kB')
    assert.equal(formatBytes(55_568), '55.6 kB')
    assert.equal(formatBytes(999_999), '1.00 MB')
    assert.equal(formatBytes(321_072), '321 kB')
    assert.equal(formatBytes(13.2e9), '13.2 GB')
    assert.equal(formatBytes(2.5e12), '2.50 TB')
  })

  it('parseDuration: a number and one of s m h d w; anything else is INVALID_ARGUMENT naming the forms', () => {
    assert.equal(parseDuration('7d'), 7 * 86_400_000)
    assert.equal(parseDuration('12h'), 12 * 3_600_000)
    assert.equal(parseDuration(' 30m '), 30 * 60_000)
    assert.equal(parseDuration('90s'), 90_000)
    assert.equal(parseDuration('1.5d'), 1.5 * 86_400_000)
    assert.equal(parseDuration('2w'), 14 * 86_400_000)
    for (const bad of ['7', 'd', '-1d', '7 days', '1e3s', '', '7D']) {
      assert.throws(() => parseDuration(bad), (e: unknown) => e instanceof HarnessError && e.code === 'INVALID_ARGUMENT' && e.message.includes('d (days)') && e.message.includes('--older-than 7d'), bad)
    }
  })

  it('disk usage counts a hard-linked file once, and frees it only when every link goes', () => {
    const dir = tmpDir()
    const a = path.join(dir, 'a'), b = path.join(dir, 'b')
    fs.mkdirSync(a)
    fs.mkdirSync(b)
    fs.writeFileSync(path.join(a, 'big'), Buffer.alloc(200_000, 7))
    fs.writeFileSync(path.join(a, 'small'), 'x')
    fs.linkSync(path.join(a, 'big'), path.join(b, 'big-link'))
    const ua = diskUsage(a), ub = diskUsage(b)
    assert.equal(usageBytes(ua), du(a))
    assert.equal(usageBytes(ua, ub), du(a, b))
    assert.equal(usageBytes(diskUsage(dir)), du(dir))
    const big = du(path.join(a, 'big'))
    assert.ok(big >= 200_000)
    // Removing a alone leaves the linked file on disk; removing both frees it.
    assert.equal(freedBytes([ua]), du(a) - big)
    assert.equal(freedBytes([ua, ub]), du(a, b))
  })
})
