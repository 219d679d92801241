import { CONTINUATION } from '../../src/util/commentLines.ts'

/** A generated header with each note written by commentLines back on one line (continuation lines joined with a space). */
export function unwrapComments(text: string): string {
  // Only CONTINUATION itself: an sbatch header's aligned lines ('#          sbatch ...') stay lines of their own.
  return text.replace(new RegExp(`\n${CONTINUATION}(?! )`, 'g'), ' ')
}
