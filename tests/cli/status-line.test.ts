// A step without a count (building and opening a session: 17-43 s at 48 x 128 experts) says what it
// does while it runs, so a user does not take the silence for a hang; quick steps print nothing.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { withStatus } from '../../src/cli/progress.ts'

async function stderrOf(work: () => Promise<unknown>): Promise<string> {
  const chunks: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => (chunks.push(String(chunk)), true)) as typeof process.stderr.write
  try {
    await work()
  } finally {
    process.stderr.write = write
  }
  return chunks.join('')
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

describe('withStatus', () => {
  it('says a slow step on a terminal, then its time on the same line', async () => {
    const out = await stderrOf(() => withStatus('opening', () => sleep(300), { tty: true, afterMs: 50 }))
    assert.match(out, /^opening… 0\.\d s\n$/)
  })

  it('in a log, one line while it runs and one when done', async () => {
    const out = await stderrOf(() => withStatus('opening', () => sleep(300), { tty: false, afterMs: 50 }))
    assert.match(out, /^opening… \(still running after 0\.\d s\)\nopening: done in 0\.\d s\n$/)
  })

  it('prints nothing for a quick step, returns its value and passes its error on', async () => {
    assert.equal(await stderrOf(async () => assert.equal(await withStatus('opening', async () => 7, { tty: true, afterMs: 200 }), 7)), '')
    const out = await stderrOf(() => assert.rejects(withStatus('opening', async () => { await sleep(120); throw new Error('boom') }, { tty: true, afterMs: 20 }), /boom/))
    assert.match(out, /^opening… 0\.\d s\n$/)
  })
})
