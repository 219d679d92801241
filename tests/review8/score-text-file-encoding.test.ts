// Review 8: `score --text-file` read the file as UTF-8 with replacement: a Latin-1 text (old corpora,
// Brown's own files) or a binary file given by mistake was scored with every invalid byte turned into
// U+FFFD, without a word, so the scores were of a text that is not the file's. Now refused (as Python's
// strict open() refuses it), naming the byte offset and how to convert; valid UTF-8 scores as before.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { BIN, lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('score --text-file that is not UTF-8', () => {
  it('is refused naming the first invalid byte and the conversion (file and standard input)', () => {
    const latin1 = path.join(dir, 'latin1.txt')
    fs.writeFileSync(latin1, Buffer.from('The caf\xe9 is quick.', 'latin1'))
    const r = runCli(['score', '--model', model.dir, '--text-file', latin1], { env })
    assert.equal(r.status, 1, r.stderr)
    assert.equal(r.stderr.trim(), `error [INVALID_ARGUMENT]: --text-file ${latin1} is not UTF-8 text (an invalid byte at offset 7); convert it (e.g. iconv -f latin1 -t utf-8 ${latin1} > page.txt) and score that.`)
    const piped = spawnSync(process.execPath, [BIN, 'score', '--model', model.dir, '--text-file', '-'], { input: fs.readFileSync(latin1), encoding: 'utf8', env: { ...process.env, ...env } })
    assert.equal(piped.status, 1, piped.stderr)
    assert.match(piped.stderr, /error \[INVALID_ARGUMENT\]: --text-file - is not UTF-8 text \(an invalid byte at offset 7\)/)
    // A U+FFFD the file holds (valid UTF-8) is text: the offset is of the first invalid byte after it.
    const mixed = path.join(dir, 'mixed.txt')
    fs.writeFileSync(mixed, Buffer.concat([Buffer.from('a\uFFFDb', 'utf8'), Buffer.from('\xe9', 'latin1')]))
    assert.match(runCli(['score', '--model', model.dir, '--text-file', mixed], { env }).stderr, /is not UTF-8 text \(an invalid byte at offset 5\)/)
  })

  it('the same text in UTF-8 (with a byte-order mark too) scores as --text does', () => {
    const utf8 = path.join(dir, 'utf8.txt')
    fs.writeFileSync(utf8, '\uFEFFThe café is quick.')
    const fromFile = runCli(['score', '--model', model.dir, '--text-file', utf8, '--json'], { env })
    assert.equal(fromFile.status, 0, fromFile.stderr)
    const direct = runCli(['score', '--model', model.dir, '--text', 'The café is quick.', '--json'], { env })
    assert.deepEqual(lastJson(fromFile.stdout).logprobs, lastJson(direct.stdout).logprobs)
  })
})
