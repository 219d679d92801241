// A single-node Slurm cluster for the tests: munged, slurmctld and slurmd on localhost, everything
// (config, munge key and socket, state, spool, logs, pid files) in one temporary folder. Chosen to
// work in an unprivileged-cgroup container: proctrack/linuxproc, task/none, no cgroup plugins,
// no accounting daemon (job ends are read from scontrol).
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export const SLURM_BINARIES = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'sinfo', 'scontrol', 'scancel']

/** The binaries that are missing from PATH (and /usr/sbin, where Debian puts the daemons). */
export function missingSlurmBinaries(): string[] {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']
  return SLURM_BINARIES.filter(b => !dirs.some(d => d && fs.existsSync(path.join(d, b))))
}

const which = (b: string) => [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'].map(d => path.join(d, b)).find(p => fs.existsSync(p)) ?? b

export interface LocalSlurm {
  dir: string
  /** Environment for every Slurm client (and, through sbatch's --export=ALL, for the jobs). */
  env: Record<string, string>
  cpus: number
  stop(): void
}

function pidOf(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    return pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function waitFor(what: string, test: () => boolean, timeoutMs: number, log: () => string): void {
  const end = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > end) throw new Error(`local Slurm: ${what} within ${timeoutMs / 1000} s.\n${log()}`)
    spawnSync('sleep', ['0.2'])
  }
}

export function startLocalSlurm(options: { cpus?: number } = {}): LocalSlurm {
  const cpus = options.cpus ?? 2
  // Short path: the munge socket path must fit in a unix socket address (108 bytes).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slurm-'))
  for (const d of ['state', 'spool', 'log', 'munge']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 })
  const key = path.join(dir, 'munge', 'munge.key')
  fs.writeFileSync(key, crypto.randomBytes(1024), { mode: 0o400 })
  const socket = path.join(dir, 'munge', 'munge.sock')
  const port = 20000 + Math.floor(Math.random() * 20000)
  const user = os.userInfo().username
  const conf = path.join(dir, 'slurm.conf')
  fs.writeFileSync(conf, [
    'ClusterName=moeharness-test',
    'SlurmctldHost=localhost',
    `SlurmUser=${user}`,
    `SlurmdUser=${user}`,
    `SlurmctldPort=${port}`,
    `SlurmdPort=${port + 1}`,
    'AuthType=auth/munge',
    `AuthInfo=socket=${socket}`,
    `StateSaveLocation=${dir}/state`,
    `SlurmdSpoolDir=${dir}/spool`,
    `SlurmctldPidFile=${dir}/slurmctld.pid`,
    `SlurmdPidFile=${dir}/slurmd.pid`,
    `SlurmctldLogFile=${dir}/log/slurmctld.log`,
    `SlurmdLogFile=${dir}/log/slurmd.log`,
    // No cgroups in a container: track processes through /proc, bind nothing.
    'ProctrackType=proctrack/linuxproc',
    'TaskPlugin=task/none',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    'JobCompType=jobcomp/none',
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_CPU',
    'SchedulerType=sched/backfill',
    'MpiDefault=none',
    'ReturnToService=2',
    'SlurmctldTimeout=30',
    'SlurmdTimeout=30',
    'InactiveLimit=0',
    'KillWait=2',
    // Keep finished jobs visible to scontrol for the test's lifetime.
    'MinJobAge=600',
    // The array script requests the memory a task needs (src/cluster/memoryRequest.ts: 2G for the tests'
    // tiny-moe sweeps), and Slurm refuses a job asking more than a node's RealMemory even under CR_CPU,
    // where memory is not allocated: declare the machine's memory (less a margin, since slurmd drains a
    // node whose declared memory exceeds what it detects), not half of it, so a 4 GB runner schedules it.
    `NodeName=localhost CPUs=${cpus} RealMemory=${Math.max(1000, Math.floor(0.9 * os.totalmem() / 2 ** 20))} State=UNKNOWN`,
    'PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP',
    '',
  ].join('\n'))
  const env = { SLURM_CONF: conf }
  const run = (bin: string, args: string[]) => execFileSync(which(bin), args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs = () => ['log/slurmctld.log', 'log/slurmd.log', 'munge/munged.log']
    .map(f => { try { return `--- ${f}\n${fs.readFileSync(path.join(dir, f), 'utf8').split('\n').slice(-15).join('\n')}` } catch { return `--- ${f}: none` } }).join('\n')

  const slurm: LocalSlurm = {
    dir, env, cpus,
    stop() {
      // Cancel whatever is left, ask slurmctld to stop itself and slurmd, then make sure every daemon is gone.
      spawnSync(which('scancel'), ['--full', '--user', user], { env: { ...process.env, ...env }, timeout: 10_000 })
      spawnSync(which('scontrol'), ['shutdown'], { env: { ...process.env, ...env }, timeout: 10_000 })
      for (const file of ['slurmd.pid', 'slurmctld.pid', 'munge/munged.pid']) {
        const pid = pidOf(path.join(dir, file))
        if (!pid) continue
        const end = Date.now() + 10_000
        if (file === 'munge/munged.pid' && alive(pid)) process.kill(pid, 'SIGTERM')
        while (alive(pid) && Date.now() < end) spawnSync('sleep', ['0.2'])
        if (alive(pid)) process.kill(pid, 'SIGKILL')
      }
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    run('munged', ['--force', `--socket=${socket}`, `--key-file=${key}`, `--pid-file=${dir}/munge/munged.pid`, `--seed-file=${dir}/munge/munged.seed`, `--log-file=${dir}/munge/munged.log`])
    run('slurmctld', ['-f', conf])
    run('slurmd', ['-f', conf, '-N', 'localhost'])
    waitFor('the node did not become idle', () => {
      const r = spawnSync(which('sinfo'), ['--noheader', '--format=%t'], { env: { ...process.env, ...env }, encoding: 'utf8' })
      return r.status === 0 && /^idle/m.test(r.stdout)
    }, 60_000, logs)
  } catch (e) {
    const message = `${(e as Error).message}\n${(e as { stderr?: Buffer }).stderr?.toString() ?? ''}\n${logs()}`
    slurm.stop()
    throw new Error(`local Slurm did not start: ${message}`)
  }
  return slurm
}
