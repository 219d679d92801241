// Progress bars on stderr: a live bar on a terminal, plain periodic lines otherwise (CI logs).
import cliProgress from 'cli-progress'

export interface Progress {
  update(done: number, label?: string): void
  stop(): void
}

export function createProgress(title: string, total: number, options: { quiet?: boolean } = {}): Progress {
  if (options.quiet || total <= 0) return { update() {}, stop() {} }
  const tty = Boolean(process.stderr.isTTY)
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${title} {bar} {value}/{total} | {label} | eta {eta_formatted}`,
    noTTYOutput: !tty,
    notTTYSchedule: 5000,
    hideCursor: tty,
    etaBuffer: 20,
    clearOnComplete: false,
  }, cliProgress.Presets.shades_classic)
  bar.start(total, 0, { label: '' })
  return {
    update(done, label) {
      bar.update(done, label === undefined ? {} : { label })
    },
    stop() {
      bar.stop()
    },
  }
}
