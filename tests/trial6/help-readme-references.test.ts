// `cache --help` sent readers to README "The harness home", a section the README does not have (the
// paragraph is under "Sweeps and results"). Every README "Section" a command's --help names must be a
// heading of README.md.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'

/** The subcommands a --help output lists (src/cli/main.ts runs the CLI when imported, so it is read from the help). */
const subcommands = (help: string) => help.includes('Commands:')
  ? [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map(m => m[1]!).filter(n => n !== 'help')
  : []

describe('README sections named by --help', () => {
  it('are headings of README.md', () => {
    let fenced = false
    const headings = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n')
      .filter(l => { if (l.startsWith('```')) fenced = !fenced; return !fenced && /^#+ /.test(l) }) // not a shell comment in a code block
      .map(l => l.replace(/^#+ /, '').trim())
    const queue: string[][] = [[]]
    let named = 0, helps = 0
    while (queue.length) {
      const command = queue.shift()!
      const help = runCli([...command, '--help'])
      assert.equal(help.status, 0, `${command.join(' ')}: ${help.stderr}`)
      helps++
      for (const m of help.stdout.matchAll(/README "([^"]+)"/g)) {
        named++
        assert.ok(headings.some(h => h.toLowerCase().includes(m[1]!.toLowerCase())), `${command.join(' ')} --help names README "${m[1]}", which is no heading; headings: ${headings.join(' | ')}`)
      }
      if (command.length < 2) queue.push(...subcommands(help.stdout).map(s => [...command, s]))
    }
    assert.ok(helps > 10, `${helps} --help pages read`)
    assert.ok(named > 0, 'some --help names a README section')
  })
})
