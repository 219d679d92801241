import { Command, CommanderError, type Option } from 'commander'
import { fail, formatContext, isHarnessError } from '../errors.ts'
import { fileError } from '../util/fileErrors.ts'
import { unexpandedHomePath } from '../util/homePath.ts'
import { HARNESS_VERSION } from '../version.ts'
import { stopAllProgress } from './progress.ts'
import { checkEnvironment } from './environment.ts'
import { registerEval } from './commands/eval.ts'
import { registerScore } from './commands/score.ts'
import { registerMethods } from './commands/methods.ts'
import { registerTasks } from './commands/tasks.ts'
import { registerTransform } from './commands/transform.ts'
import { registerSweep } from './commands/sweep.ts'
import { registerStore } from './commands/store.ts'
import { registerReport } from './commands/report.ts'
import { registerStart } from './commands/start.ts'
import { registerCache } from './commands/cache.ts'

export function buildProgram(): Command {
  const program = new Command()
  program
    .name('moe-harness')
    .description('Evaluate Mixture-of-Experts sparsification methods: score, evaluate, transform, sweep and publish leaderboards.')
    .version(HARNESS_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .hook('preAction', () => checkEnvironment())
    // The variables were documented only in the README; a user reading --help never met them.
    .addHelpText('after', `
Environment variables (checked before any command; empty = unset):
  MOE_HARNESS_HOME            harness home: calibration/, graphs/, variants/ (default ./.harness)
  MOE_HARNESS_DATA            folder of the standard task datasets (default ./data; --data-dir wins)
  MOE_HARNESS_SPILL_MB        float32 MB (10^6 bytes) of a method's edited tensors held in memory before they are
                              stored under the home (default 512; Infinity = never store)
  MOE_HARNESS_WEIGHTS         mapped (default: weights mapped from the checkpoint) or memory
                              (float32-resident)
  MOE_HARNESS_GRAPH_CACHE_GB  GB (10^9 bytes) the built-graph cache under the home keeps (default 20)`)
  registerScore(program)
  registerEval(program)
  registerTasks(program)
  registerMethods(program)
  registerTransform(program)
  registerSweep(program)
  registerStore(program)
  registerReport(program)
  registerStart(program)
  registerCache(program)
  deferMandatoryOptions(program)
  refuseUnexpandedHomeFlags(program)
  return program
}

/** Option values that are paths: their placeholder names a file, folder or path (`--db <file>`, `--out <dir>`, `--keep-store <file...>`), or a calibration source (a file, or a name). */
const PATH_PLACEHOLDER = /<(file|dir|path|source)(\.\.\.)?>/

/**
 * INVALID_ARGUMENT, before the command runs, for a path flag whose value begins with a '~' the shell did
 * not expand (src/util/homePath.ts): `--db=~/results.sqlite` or a quoted '~/x' made a folder named '~'
 * in the current folder, as the config's paths and MOE_HARNESS_HOME did before they were refused.
 */
function refuseUnexpandedHomeFlags(program: Command): void {
  program.hook('preAction', (_program, action) => {
    for (const o of action.options) {
      if (!PATH_PLACEHOLDER.test(o.flags)) continue
      const value: unknown = action.getOptionValue(o.attributeName())
      for (const v of Array.isArray(value) ? value : [value]) {
        const meant = typeof v === 'string' ? unexpandedHomePath(v) : undefined
        if (meant === undefined) continue
        fail('INVALID_ARGUMENT', `${o.long} '${v}': the shell did not expand '~' (it does so only at the start of an unquoted word, not after '=' or in quotes), so it would be a file or folder named '~' in ${process.cwd()}; pass ${o.long} ${meant}.`)
      }
    }
  })
}

/**
 * Commander checks mandatory options before unknown ones, so `eval --modle DIR` said "required option
 * '--model <dir>' not specified" and never named the typo. The mandatory options are checked in a
 * preAction hook instead, which runs after commander refused unknown options (with its "Did you mean").
 * Same message and exit code (2) as commander's own check.
 */
function deferMandatoryOptions(program: Command): void {
  const mandatory = new Map<Command, Option[]>()
  const visit = (cmd: Command) => {
    const opts = cmd.options.filter(o => o.mandatory)
    for (const o of opts) o.mandatory = false
    if (opts.length) mandatory.set(cmd, opts)
    cmd.commands.forEach(visit)
  }
  visit(program)
  program.hook('preAction', (_program, action) => {
    for (const o of mandatory.get(action) ?? []) {
      if (action.getOptionValue(o.attributeName()) === undefined) action.error(`error: required option '${o.flags}' not specified`, { code: 'commander.missingMandatoryOptionValue' })
    }
  })
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its message (help and version exit with code 0).
      return e.exitCode === 0 ? 0 : 2
    }
    if (isHarnessError(e)) {
      // `error [CODE] (method naee, phase apply, task arc_easy): message`; no parentheses without context.
      process.stderr.write(`error [${e.code}]${formatContext(e)}: ${e.message}\n`)
      return 1
    }
    // A file-system error that no boundary mapped still names its path and the fix, not a stack trace.
    const errno = e as NodeJS.ErrnoException
    if (typeof errno?.code === 'string' && /^E[A-Z]+$/.test(errno.code) && errno.syscall) {
      const mapped = fileError(e, errno.path ?? 'a file', errno.syscall === 'open' || errno.syscall === 'read' ? 'read' : errno.syscall)
      process.stderr.write(`error [${mapped.code}]: ${mapped.message}\n`)
      return 1
    }
    process.stderr.write(`error [INTERNAL]: ${(e as Error)?.stack ?? String(e)}\n`)
    return 1
  } finally {
    // A bar left running by a failed command would keep the process alive after its error.
    stopAllProgress()
  }
}

// `moe-harness methods | head` closes the pipe early; that is not an error.
process.stdout.on('error', e => {
  if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0)
  throw e
})

const code = await main(process.argv.slice(2))
// A command may have set its own exit code (an interrupted sweep exits 130).
if (code !== 0 || !process.exitCode) process.exitCode = code
// Backstop: after a failure nothing may keep the process alive (a handle leaked on some error path
// would hang scripts and schedulers); everything was awaited and closed before main returned.
if (process.exitCode) setTimeout(() => process.exit(), 3000).unref()
