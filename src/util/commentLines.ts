// Notes in the header of a generated script or manifest (sbatch, Kubernetes YAML): shell-style comment
// lines short enough to read in a terminal and in review diffs, each note a paragraph whose continuation
// lines hang under its first (so a reader, or a test, tells one note from the next). Breaking is
// wrap-ansi's (soft: a word longer than the width, such as a path, keeps a line of its own).
import wrapAnsi from 'wrap-ansi'

/** Width of a comment line, its `# ` or CONTINUATION included. */
export const COMMENT_WIDTH = 100

/** What starts a note's continuation lines (its first line starts with `# `). */
export const CONTINUATION = '#   '

/** `text` as comment lines of at most `width` characters each, prefixes included, broken between words: `# ` then CONTINUATION lines. */
export function commentLines(text: string, width = COMMENT_WIDTH): string[] {
  return wrapAnsi(text, width - CONTINUATION.length, { hard: false, trim: true }).split('\n').map((l, i) => (i === 0 ? `# ${l}` : `${CONTINUATION}${l}`))
}
