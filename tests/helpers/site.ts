// Runs `moe-harness report` and reads the site it wrote, for assertions on the leaderboard.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import type { LeaderboardData } from '../../src/report/leaderboardData.ts'
import { runCli } from './cli.ts'

/** The site of store `db` written to `out`: leaderboard.json parsed, and every file's text by name. */
export function reportSite(db: string, out: string): { data: LeaderboardData; files: Map<string, string> } {
  const r = runCli(['report', '--db', db, '--out', out])
  assert.equal(r.status, 0, r.stderr)
  const files = new Map(fs.readdirSync(out).map(f => [f, fs.readFileSync(path.join(out, f), 'utf8')]))
  return { data: JSON.parse(files.get('leaderboard.json')!) as LeaderboardData, files }
}
