// The malformed-input corpus (issue 14 §5): every case runs the real CLI in its own folder and must end
// with a clear `error [CODE]:` naming the problem, the right exit code, no stack trace, no hang, and
// its folder unchanged except for what the command may create. Cases are data, one file per area,
// under cases/. Several run at once; most fail before any ONNX session is built.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { runCliAsync, type AsyncCliResult } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { calibrationCases } from './cases/calibration.ts'
import { checkpointCases } from './cases/checkpoint.ts'
import { cliFlagCases } from './cases/cliFlags.ts'
import { databaseCases, readOnlyOkCases } from './cases/database.ts'
import { harnessConfigCases } from './cases/harnessConfig.ts'
import { configCases, tokenizerCases } from './cases/modelConfig.ts'
import { outputPathCases } from './cases/outputPaths.ts'
import { taskDataCases } from './cases/taskData.ts'
import type { Fixtures, MalformedCase } from './cases/types.ts'
import { createFixtures } from './fixtures.ts'

const AREAS: Record<string, MalformedCase[]> = {
  checkpoint: checkpointCases,
  'config.json': configCases,
  tokenizer: tokenizerCases,
  'task data': taskDataCases,
  calibration: calibrationCases,
  'harness config': harnessConfigCases,
  'CLI flags': cliFlagCases,
  database: [...databaseCases, ...readOnlyOkCases],
  'output paths': outputPathCases,
}
const ALL = Object.values(AREAS).flat()
// Only these cases run when set (comma-separated names), e.g. MALFORMED_ONLY=db-missing,task-empty-file.
const ONLY = process.env.MALFORMED_ONLY?.split(',').filter(Boolean)
const CONCURRENCY = Number(process.env.MALFORMED_CONCURRENCY ?? 3)
const TIMEOUT_MS = 90_000
const NOBODY = 65534
const isRoot = process.getuid?.() === 0

interface Entry { kind: 'file' | 'dir' | 'link' | 'other'; mode: number; size: number; hash: string }

/** Every path under `dir` with its type, permissions, size and content hash. */
function snapshot(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>()
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const r = path.join(rel, name)
      const st = fs.lstatSync(path.join(dir, r))
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'other'
      const hash = kind === 'file' ? crypto.createHash('sha1').update(fs.readFileSync(path.join(dir, r))).digest('hex') : kind === 'link' ? fs.readlinkSync(path.join(dir, r)) : ''
      out.set(r, { kind, mode: st.mode & 0o7777, size: kind === 'file' ? st.size : 0, hash })
      if (kind === 'dir') walk(r)
    }
  }
  walk('')
  return out
}

interface Outcome { result: AsyncCliResult; before: Map<string, Entry>; after: Map<string, Entry>; seconds: number; skipped?: string }

async function runCase(c: MalformedCase, root: string, fx: Fixtures): Promise<Outcome> {
  const dir = path.join(root, 'cases', c.name)
  fs.mkdirSync(dir, { recursive: true })
  const args = c.setup(dir, fx)
  const asNobody = c.unprivileged && isRoot
  if (asNobody) fs.chmodSync(dir, 0o777)
  const before = snapshot(dir)
  const t0 = performance.now()
  const result = await runCliAsync(args, {
    cwd: dir, timeoutMs: TIMEOUT_MS,
    env: { MOE_HARNESS_DATA: undefined, MOE_HARNESS_HOME: undefined, NO_COLOR: '1', HOME: asNobody ? '/tmp' : process.env.HOME },
    ...(asNobody ? { uid: NOBODY, gid: NOBODY } : {}),
  })
  const seconds = (performance.now() - t0) / 1000
  return { result, before, after: snapshot(dir), seconds }
}

/** Runs `jobs` at most `limit` at a time, in order; each result is available as soon as it is done. */
function pooled<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T>[] {
  let active = 0
  const waiting: (() => void)[] = []
  const acquire = () => active < limit ? (active++, Promise.resolve()) : new Promise<void>(resolve => waiting.push(resolve))
  const release = () => { const next = waiting.shift(); if (next) next(); else active-- }
  return jobs.map(job => acquire().then(() => job().finally(release)))
}

const allowed = (rel: string, c: MalformedCase) => (c.mayCreate ?? []).some(p => rel === p || rel.startsWith(p + path.sep))

function check(c: MalformedCase, o: Outcome): void {
  const { result: r } = o
  const shown = `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}\n--- stderr\n${r.stderr.slice(-2000)}\n--- stdout\n${r.stdout.slice(-500)}`
  assert.ok(!r.timedOut, `hung: killed after ${TIMEOUT_MS / 1000} s\n${shown}`)
  assert.equal(r.signal, null, `crashed with ${r.signal}\n${shown}`)
  assert.doesNotMatch(r.stderr, /^\s+at .+/m, `stack trace on stderr\n${shown}`)
  assert.doesNotMatch(r.stderr, /error \[INTERNAL\]/, `internal error\n${shown}`)
  const codes = [c.code].flat()
  if (codes.includes('OK') && (r.status === 0 || codes.length === 1)) {
    assert.equal(r.status, 0, `expected success\n${shown}`)
    assert.match(r.stdout + r.stderr, c.message, shown)
  } else {
    const m = r.stderr.match(/^error \[([A-Z_]+)\](?: \((?:method|phase|task) [^)]*\))?: ([\s\S]*)$/m)
    if (m) {
      assert.equal(r.status, 1, `a HarnessError exits 1\n${shown}`)
      assert.ok(codes.includes(m[1]), `code ${m[1]}, expected ${codes.join(' or ')}\n${shown}`)
      assert.match(m[2], c.message, `the message does not name the problem\n${shown}`)
    } else {
      assert.ok(codes.includes('USAGE'), `no \`error [CODE]:\` line\n${shown}`)
      assert.equal(r.status, 2, `a usage error exits 2\n${shown}`)
      assert.match(r.stderr, /^error: /m, shown)
      assert.match(r.stderr, c.message, shown)
    }
  }
  const problems: string[] = []
  for (const [rel, e] of o.before) {
    const now = o.after.get(rel)
    if (!now) problems.push(`deleted ${rel}`)
    else if (JSON.stringify(now) !== JSON.stringify(e)) problems.push(`changed ${rel}`)
  }
  for (const rel of o.after.keys()) if (!o.before.has(rel) && !allowed(rel, c)) problems.push(`left behind ${rel}`)
  assert.deepEqual(problems, [], `the folder changed\n${shown}`)
}

describe('malformed inputs end with a clear error and nothing damaged or left behind', () => {
  const cases = ONLY ? ALL.filter(c => ONLY.includes(c.name)) : ALL
  let outcomes: Promise<Outcome>[] = []
  const t0 = performance.now()

  // Made here, not in the hook: a temp folder registered inside `before` would be removed when it ends.
  const root = tmpDir('moe-malformed-')
  before(() => {
    fs.chmodSync(root, 0o755)
    const fx = createFixtures(path.join(root, 'shared'))
    outcomes = pooled(cases.map(c => () => runCase(c, root, fx)), CONCURRENCY)
  })

  it('has at least 60 cases in every area, with unique names', () => {
    assert.ok(ALL.length >= 60, `${ALL.length} cases`)
    assert.equal(new Set(ALL.map(c => c.name)).size, ALL.length, 'duplicate case names')
    for (const [area, list] of Object.entries(AREAS)) assert.ok(list.length >= 2, `area ${area} has ${list.length} cases`)
  })

  cases.forEach((c, i) => {
    it(`${c.name}${c.area ? ` [${c.area}]` : ''}`, async () => {
      const o = await outcomes[i]
      check(c, o)
    })
  })

  it('the corpus runs in a few minutes', async () => {
    await Promise.allSettled(outcomes)
    const seconds = (performance.now() - t0) / 1000
    process.stderr.write(`# malformed corpus: ${cases.length} cases in ${seconds.toFixed(1)} s (${CONCURRENCY} at a time)\n`)
    assert.ok(seconds < 600, `${seconds.toFixed(0)} s`)
  })
})
