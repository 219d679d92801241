// A path that begins with '~' the shell did not expand: one rule for the config's paths, MOE_HARNESS_HOME
// and the CLI's path flags. The shell expands '~' only at the start of a word (not in `--db=~/x`, not when
// quoted) and nothing else does, so such a path would be a folder named '~' in the current folder, whose
// cleanup (`rm -rf ~`) deletes the user's home.
import os from 'node:os'
import path from 'node:path'

/** The path `value` meant ('~' or '~/...' under the user's home directory), or undefined when it does not begin with an unexpanded '~'. */
export function unexpandedHomePath(value: string | undefined): string | undefined {
  if (value !== '~' && !value?.startsWith('~/')) return undefined
  return path.join(os.homedir(), value.slice(1))
}
