// Byte counts as people read them: one format for disk usage (cache) and memory (the pool line, refusals).

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB']

/** `bytes` in SI units with three significant digits: 0 B, 812 B, 55.6 kB, 13.2 GB (decimal units, as free(1) -h, du --si and HF's model cards print them). */
export function formatBytes(bytes: number): string {
  let v = bytes
  let u = 0
  while (v >= 999.5 && u < UNITS.length - 1) {
    v /= 1000
    u++
  }
  return u === 0 ? `${Math.round(v)} B` : `${v >= 99.95 ? v.toFixed(0) : v >= 9.995 ? v.toFixed(1) : v.toFixed(2)} ${UNITS[u]}`
}
