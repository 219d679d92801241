// Calibration text that is not text, or not there.
import fs from 'node:fs'
import path from 'node:path'
import { garbage } from '../fixtures.ts'
import type { Fixtures, MalformedCase } from './types.ts'

function transformWith(dir: string, fx: Fixtures, source: string, extra: string[] = []): string[] {
  return ['eval', '--model', fx.baseModel, '--tasks', 'brown-cloze', '--limit', '2', '--method', 'frequency-pruning', '--ratio', '0.25',
    '--calibration', source, '--calibration-sequences', '2', '--calibration-length', '8', ...extra]
}

function write(dir: string, name: string, content: string | Buffer): string {
  const p = path.join(dir, name)
  fs.writeFileSync(p, content)
  return p
}

const CAL = 'CALIBRATION_FAILED'

export const calibrationCases: MalformedCase[] = [
  {
    name: 'calibration-random-bytes',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.txt', garbage(8000, 21))),
    code: CAL, message: /calib\.txt.*(NUL|UTF-8|not text)/,
  },
  {
    name: 'calibration-nul-bytes',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.txt', 'The jury said\n\nit was\0\0\0 fine.\n')),
    code: CAL, message: /calib\.txt:3\b.*NUL/,
  },
  {
    name: 'calibration-latin1',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.txt', Buffer.from('Un caf\xe9 cr\xe8me, s\'il vous pla\xeet.\n', 'latin1'))),
    code: CAL, message: /calib\.txt:1\b.*UTF-8/,
  },
  {
    name: 'calibration-control-characters',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.txt', Array.from({ length: 400 }, (_, i) => String.fromCharCode(1 + (i % 8), 65 + (i % 26))).join(''))),
    code: CAL, message: /calib\.txt.*not text/,
  },
  {
    name: 'calibration-empty-file',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.txt', '\n\n  \n')),
    code: CAL, message: /calib\.txt has no text/,
  },
  {
    name: 'calibration-missing-file',
    setup: (dir, fx) => transformWith(dir, fx, path.join(dir, 'nope.txt')),
    code: CAL, message: /nope\.txt does not exist/,
  },
  {
    name: 'calibration-is-a-folder',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'calib.txt')); return transformWith(dir, fx, path.join(dir, 'calib.txt')) },
    code: CAL, message: /calib\.txt is a folder/,
  },
  {
    name: 'calibration-jsonl-missing-field',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.jsonl', '{"text": "fine text here"}\n{"body": "no text field"}\n')),
    code: CAL, message: /calib\.jsonl:2\b.*'text'/,
  },
  {
    name: 'calibration-jsonl-random-bytes',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.jsonl', garbage(8000, 23))),
    code: CAL, message: /calib\.jsonl.*(NUL|UTF-8|JSON)/,
  },
  {
    name: 'calibration-parquet-random-bytes',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.parquet', garbage(8000, 25))),
    code: CAL, message: /calib\.parquet could not be read as parquet/,
  },
  {
    name: 'calibration-unknown-extension',
    setup: (dir, fx) => transformWith(dir, fx, write(dir, 'calib.pdf', '%PDF-1.4 not really')),
    code: CAL, message: /calib\.pdf/,
  },
]
