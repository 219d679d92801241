// Brown corpus lines look like "\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./."
// The tag follows the last slash; words may contain slashes themselves ("1/2/cd").

export function parseBrownLine(line: string): [string, string][] {
  const out: [string, string][] = []
  for (const item of line.trim().split(/\s+/)) {
    if (!item) continue
    const cut = item.lastIndexOf('/')
    if (cut <= 0) continue
    out.push([item.slice(0, cut), item.slice(cut + 1)])
  }
  return out
}

const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', "''", "'", "n't", "'s", "'re", "'ll", "'d", "'ve", "'m"])
const NO_SPACE_AFTER = new Set(['(', '``'])

/** Joins Brown tokens into ordinary English text: LaTeX-style quotes become ", punctuation attaches. */
export function detokenizeBrown(words: readonly string[]): string {
  let text = ''
  let glueNext = true
  for (const word of words) {
    const surface = word === '``' || word === "''" ? '"' : word
    const glue = glueNext || NO_SPACE_BEFORE.has(word)
    text += (glue ? '' : ' ') + surface
    glueNext = NO_SPACE_AFTER.has(word)
  }
  return text.replace(/\s+/g, ' ').trim()
}
