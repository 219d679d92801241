// Fresh-user trial 7: Ctrl-C in `eval` says what happened. Found: eval died of SIGINT (the shell's 130)
// without a word, where `sweep` says it was interrupted and how to resume; dying of the signal also
// skipped the exit hooks that remove spilled overrides and half-written graph files.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { describe, it } from 'node:test'
import { interruptedLine } from '../../src/cli/commands/eval.ts'
import { BIN, ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** Runs eval, sends SIGINT once `ready` matches its stderr, and returns how it ended. */
function interruptWhen(args: string[], ready: RegExp): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string; sent: boolean }> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, 'eval', '--model', path.join(ROOT, 'models/tiny-moe'), '--threads', '1', ...args], {
      cwd: ROOT, env: { ...process.env, MOE_HARNESS_HOME: tmpDir() }, stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = '', stdout = '', sent = false
    child.stdout.setEncoding('utf8').on('data', d => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', d => {
      stderr += d
      if (!sent && ready.test(stderr)) { sent = true; child.kill('SIGINT') }
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stderr, stdout, sent }) })
  })
}

describe('eval interrupted by Ctrl-C', () => {
  it('while scoring: exits 130 with one line saying what was not saved and how to rerun', async () => {
    // The whole of brown-cloze (1500 documents) takes seconds; the signal comes when its bar appears.
    const r = await interruptWhen(['--tasks', 'brown-cloze'], /brown-cloze +░/)
    assert.ok(r.sent, `interrupted before the end: ${r.stderr}`)
    assert.equal(r.signal, null, 'exits by itself, not killed by the signal')
    assert.equal(r.code, 130)
    assert.match(r.stderr, /\ninterrupted while scoring brown-cloze \(task 1 of 1\): eval saves no results, so the scores so far are lost; rerun the same command to evaluate again, or use sweep, which keeps finished cells and resumes\n$/)
    assert.equal(r.stdout, '', 'no results table')
  })

  it('while calibrating: says nothing was scored, and that finished calibration statistics are reused', async () => {
    const r = await interruptWhen(['--tasks', 'brown-cloze', '--limit', '4', '--method', 'reap', '--ratio', '0.25'], /calibration +░/)
    assert.ok(r.sent, `interrupted before the end: ${r.stderr}`)
    assert.equal(r.code, 130)
    assert.match(r.stderr, /\ninterrupted while preparing the reap variant \(calibration and the method\): nothing was scored and eval saves no results; calibration statistics are cached once complete, and rerunning the same command reuses them\n$/)
  })

  it('the line says what a rerun reuses: a sequential calibration per layer, a calibrated variant\'s statistics, none without calibration', () => {
    assert.match(interruptedLine({ what: 'preparing', method: 'naee', calibration: 'sequential' }), /the layers' calibration statistics completed so far are cached, and rerunning the same command reuses them$/)
    assert.equal(interruptedLine({ what: 'preparing', method: 'magnitude-pruning' }), 'interrupted while applying magnitude-pruning: nothing was scored or saved; rerun the same command to evaluate')
    assert.match(interruptedLine({ what: 'scoring', task: 'piqa', index: 2, tasks: 3, calibrated: true }), /^interrupted while scoring piqa \(task 2 of 3\): .*evaluate again \(its calibration statistics are cached\), or use sweep/)
  })
})
