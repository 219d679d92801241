// Progress bars on stderr: a live bar on a terminal, plain periodic lines otherwise (CI logs).
//
// A bar owns a timer (cli-progress redraws on an interval), and a live timer keeps Node running: a
// command that fails while a bar is shown would print its error and then never exit. So every bar is
// registered here, `withProgress` stops its bar however the work ends, and the CLI entry calls
// `stopAllProgress()` after every command, error or not.
import cliProgress from 'cli-progress'

export interface Progress {
  update(done: number, label?: string): void
  /** Idempotent. */
  stop(): void
}

const live = new Set<Progress>()

/** `unit` names what is counted, after the count ("12/24 sequences"); a bare "0/24" left it to guess. */
export function createProgress(title: string, total: number, options: { quiet?: boolean; unit?: string } = {}): Progress {
  if (options.quiet || total <= 0) return { update() {}, stop() {} }
  const tty = Boolean(process.stderr.isTTY)
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    // The label's separator travels with it (payload `labelPart`): a bar without a label showed "|  |".
    format: `${title} {bar} {value}/{total}${options.unit ? ` ${options.unit}` : ''}{labelPart} | eta {eta_formatted}`,
    noTTYOutput: !tty,
    notTTYSchedule: 5000,
    hideCursor: tty,
    etaBuffer: 20,
    clearOnComplete: false,
    // Until a rate is known cli-progress's eta is the string '0', 'INF' or 'NULL' (printed as '0s', 'NFs'): say '--'.
    formatTime: (t: number | string, o: cliProgress.Options, round: number) => (typeof t === 'number' && Number.isFinite(t) ? cliProgress.Format.TimeFormat(t, o, round) : '--'),
  }, cliProgress.Presets.shades_classic)
  bar.start(total, 0, { labelPart: '' })
  let stopped = false
  const progress: Progress = {
    update(done, label) {
      if (!stopped) bar.update(done, label === undefined ? {} : { labelPart: label ? ` | ${label}` : '' })
    },
    stop() {
      if (stopped) return
      stopped = true
      live.delete(progress)
      bar.stop()
    },
  }
  live.add(progress)
  return progress
}

/** Runs `work` with a bar that is stopped when it ends, whether it returns or throws. */
export async function withProgress<T>(title: string, total: number, work: (progress: Progress) => Promise<T>, options: { unit?: string } = {}): Promise<T> {
  const progress = createProgress(title, total, options)
  try {
    return await work(progress)
  } finally {
    progress.stop()
  }
}

/** Stops every bar still running (their timers would keep the process alive after an error). */
export function stopAllProgress(): void {
  for (const p of [...live]) p.stop()
}
