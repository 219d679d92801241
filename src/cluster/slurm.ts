// The one module that runs the Slurm binaries (sbatch, squeue, scontrol, sacct). Every call is a plain
// child process with a timeout; what Slurm prints on failure is passed through in the error.
import { spawnSync } from 'node:child_process'
import { fail } from '../errors.ts'

export type TaskState = 'PENDING' | 'RUNNING' | 'COMPLETING' | 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'TIMEOUT' | 'OUT_OF_MEMORY' | 'NODE_FAIL' | string

function slurm(binary: string, args: string[], timeoutMs = 60_000): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(binary, args, { encoding: 'utf8', timeout: timeoutMs })
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') {
      fail('SLURM_UNAVAILABLE', `'${binary}' is not on PATH: run \`moe-harness sweep --slurm\` on a Slurm login node (or install the Slurm client tools, e.g. Debian's slurm-client), or use --slurm --dry-run to only write the job script.`)
    }
    fail('SLURM_UNAVAILABLE', `${binary} ${args.join(' ')} did not run: ${r.error.message}.`)
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/**
 * Submits an array job and returns its job id (`sbatch --parsable` prints `id` or `id;cluster`).
 * `array` (e.g. '0-3' or '1,3') overrides the script's `#SBATCH --array` line, which is how only the
 * incomplete shards get resubmitted.
 */
export function submitArray(script: string, array: string): string {
  const r = slurm('sbatch', ['--parsable', `--array=${array}`, script])
  if (r.status !== 0 && /configuration source|slurm\.conf|Unable to contact slurm controller|Connection refused|Zero Bytes were transmitted|Munge/i.test(r.stderr)) {
    fail('SLURM_UNAVAILABLE', `sbatch cannot reach a Slurm controller: ${r.stderr.trim()}. Run on a login node of the cluster (or set SLURM_CONF to its slurm.conf); the job script is ${script}.`)
  }
  if (r.status !== 0) {
    fail('SLURM_REFUSED', `sbatch refused ${script} (exit ${r.status}): ${r.stderr.trim() || r.stdout.trim()}. Fix the #SBATCH options (--partition, --account, --time, --gpus-per-task, --cpus-per-task, or the 'cluster' key of harness.config.ts) and rerun.`)
  }
  const id = r.stdout.trim().split(/\s+/).pop()!.split(';')[0]
  if (!/^\d+$/.test(id)) fail('SLURM_REFUSED', `sbatch printed '${r.stdout.trim()}' instead of a job id; submit ${script} by hand to see why.`)
  return id
}

/** Array tasks of `jobId` still known to the queue (pending, running, completing), by task index. */
export function queuedTasks(jobId: string): Map<number, TaskState> | undefined {
  const r = slurm('squeue', ['--noheader', '--array', '--jobs', jobId, '--format=%K|%T'])
  // squeue exits non-zero for a job id it has already forgotten: nothing is queued any more.
  if (r.status !== 0) return /Invalid job id/i.test(r.stderr) ? new Map() : undefined
  const out = new Map<number, TaskState>()
  for (const line of r.stdout.split('\n')) {
    const [task, state] = line.trim().split('|')
    if (task && /^\d+$/.test(task)) out.set(Number(task), state)
  }
  return out
}

/** How an array task ended (JobState and ExitCode), from scontrol or else sacct; undefined when neither knows. */
export function finalState(jobId: string, task: number): { state: TaskState; exitCode: string } | undefined {
  const r = slurm('scontrol', ['--oneliner', 'show', 'job', `${jobId}_${task}`])
  if (r.status === 0) {
    const state = /\bJobState=(\S+)/.exec(r.stdout)?.[1]
    const exitCode = /\bExitCode=(\S+)/.exec(r.stdout)?.[1] ?? '?'
    if (state) return { state, exitCode }
  }
  const a = slurm('sacct', ['--noheader', '--parsable2', '--allocations', '--jobs', `${jobId}_${task}`, '--format=State,ExitCode'])
  if (a.status === 0) {
    const [state, exitCode] = a.stdout.trim().split('\n')[0]?.split('|') ?? []
    if (state) return { state: state.split(' ')[0], exitCode: exitCode ?? '?' }
  }
  return undefined
}

/** Cancels array tasks (`scancel jobId_task`, or the whole job). */
export function cancel(jobId: string, task?: number): void {
  const r = slurm('scancel', [task === undefined ? jobId : `${jobId}_${task}`])
  if (r.status !== 0) fail('SLURM_REFUSED', `scancel ${jobId}${task === undefined ? '' : `_${task}`} failed: ${r.stderr.trim()}`)
}
