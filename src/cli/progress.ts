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

/** What score and eval say while their session opens. */
export const SESSION_STATUS = (ckpt: { spec: { layers: readonly unknown[] } }) => `opening the scoring session (${ckpt.spec.layers.length} layers; the graph is built on first use, then read from the cache)`

/** Past this, a step without a bar says on a log (not a terminal) that it is still running. */
const LOG_STATUS_AFTER_MS = 15_000

/**
 * Runs `work`, a step with no count to show (building a graph and opening its session: 17-43 s of
 * silence at 48 x 128 experts), saying `text` on stderr while it runs: on a terminal after 1 s, as a
 * line its time completes when done; in a log only past 15 s, as one line, and one when done. Quick
 * steps print nothing. `tty` and `afterMs` override what stderr is and the delay (tests).
 */
export async function withStatus<T>(text: string, work: () => Promise<T>, options: { tty?: boolean; afterMs?: number } = {}): Promise<T> {
  const tty = options.tty ?? Boolean(process.stderr.isTTY)
  const after = options.afterMs ?? (tty ? 1000 : LOG_STATUS_AFTER_MS)
  const t0 = performance.now()
  const seconds = () => ((performance.now() - t0) / 1000).toFixed(1)
  let shown = false
  const timer = setTimeout(() => {
    shown = true
    process.stderr.write(tty ? `${text}…` : `${text}… (still running after ${seconds()} s)\n`)
  }, after)
  try {
    return await work()
  } finally {
    clearTimeout(timer)
    if (shown) process.stderr.write(tty ? ` ${seconds()} s\n` : `${text}: done in ${seconds()} s\n`)
  }
}
