/**
 * `word` as one bash word: as it is when it needs no quoting (so scripts and commands in messages stay
 * readable), else in single quotes with each ' written '\''. The one quoting rule for the commands the
 * harness prints (report hints, mkdir fixes) and the scripts it writes (sbatch, Kubernetes args).
 */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
