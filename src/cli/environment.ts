// The harness's environment variables, checked before a command starts: a bad value must stop the
// command at once with its fix, not fail cells one by one after calibration (each variable's parser
// stays with the module that owns it).
import fs from 'node:fs'
import { spillBudgetBytes } from '../edits/overrideSpill.ts'
import { weightResidency } from '../engine/graphSession.ts'
import { graphCacheLimitBytes } from '../onnx/graphStore.ts'
import { harnessHome } from '../defaults.ts'
import { fail } from '../errors.ts'
import { unexpandedHomePath } from '../util/homePath.ts'

/**
 * Throws CONFIG_INVALID naming the variable and its fix when MOE_HARNESS_SPILL_MB, _WEIGHTS or
 * _GRAPH_CACHE_GB is malformed, or when MOE_HARNESS_HOME lies in a kernel pseudo file system, is a file,
 * has spaces around it or begins with an unexpanded '~'.
 */
export function checkEnvironment(): void {
  spillBudgetBytes()
  weightResidency()
  graphCacheLimitBytes()
  checkHome()
}

/**
 * /proc answers mkdir of a new entry with ENOENT, which Node's recursive mkdir takes for a missing
 * parent and retries forever (100% CPU, no output: `MOE_HARNESS_HOME=/proc/x moe-harness score` never
 * returned); /sys and /dev cannot hold a cache either.
 */
function checkHome(): void {
  // `MOE_HARNESS_HOME=' '` (a stray space in a script or .env) made a folder named ' ' in the current folder.
  const raw = process.env.MOE_HARNESS_HOME
  if (raw && raw.trim() !== raw) fail('CONFIG_INVALID', `MOE_HARNESS_HOME is ${JSON.stringify(raw)}, with spaces around the path; set it to the folder's path without them (or unset it for ./.harness).`)
  // A quoted '~/x' reaches us unexpanded: it made a folder named '~' here, whose cleanup (`rm -rf ~`) deletes the user's home.
  const meant = unexpandedHomePath(raw)
  if (meant !== undefined) {
    fail('CONFIG_INVALID', `MOE_HARNESS_HOME is ${JSON.stringify(raw)}: the shell did not expand '~' (the value was quoted), so it would be a folder named '~' in ${process.cwd()}; set it to ${meant} (or unset it for ./.harness).`)
  }
  const home = harnessHome()
  // A file there made every cache warn "cannot be written" on each command instead of naming the cause.
  if (fs.statSync(home, { throwIfNoEntry: false })?.isDirectory() === false) fail('CONFIG_INVALID', `MOE_HARNESS_HOME is ${home}, which is a file, not a folder; set it to a folder (created when missing), or unset it for ./.harness.`)
  const pseudo = ['/proc', '/sys', '/dev'].find(root => home === root || home.startsWith(`${root}/`))
  if (pseudo) fail('CONFIG_INVALID', `MOE_HARNESS_HOME is ${home}, inside ${pseudo}, a kernel file system that cannot hold the harness's caches; set it to a folder on a disk (or unset it for ./.harness).`)
}
