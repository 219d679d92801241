import { CONTINUATION } from '../../src/util/commentLines.ts'

/** A generated header with each note written by commentLines back on one line (continuation lines joined with a space). */
export function unwrapComments(text: string): string {
  return text.split(`\n${CONTINUATION}`).join(' ')
}
