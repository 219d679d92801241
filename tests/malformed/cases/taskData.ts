// Broken task data files in the HF datasets' schemas (jsonl and parquet) for the standard adapters.
import fs from 'node:fs'
import path from 'node:path'
import { parquetWriteFile } from 'hyparquet-writer'
import { garbage } from '../fixtures.ts'
import type { Fixtures, MalformedCase } from './types.ts'

const ARC = { id: 'a1', question: 'Which of these is a source of light?', choices: { text: ['the sun', 'a rock', 'a shoe'], label: ['A', 'B', 'C'] }, answerKey: 'A' }
const jsonl = (rows: unknown[]) => rows.map(r => typeof r === 'string' ? r : JSON.stringify(r)).join('\n') + '\n'

/** Writes `dir/data/<file>` and returns the eval command for `task` on the base model. */
function evalWith(dir: string, fx: Fixtures, task: string, file: string, content: string | Buffer): string[] {
  const p = path.join(dir, 'data', file)
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, content)
  return ['eval', '--model', fx.baseModel, '--tasks', task, '--data-dir', path.join(dir, 'data'), '--limit', '3']
}

const TASK = 'TASK_INVALID'

export const taskDataCases: MalformedCase[] = [
  {
    name: 'task-line-is-array',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, '[1, 2, 3]'])),
    code: TASK, message: /test\.jsonl:2\b.*not a JSON object/,
  },
  {
    name: 'task-line-is-number',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl(['42', ARC])),
    code: TASK, message: /test\.jsonl:1\b.*not a JSON object/,
  },
  {
    name: 'task-line-not-json',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, ARC, '{"id": "a3", "question": '])),
    code: TASK, message: /test\.jsonl:3\b.*not valid JSON/,
  },
  {
    name: 'task-missing-field',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, { ...ARC, choices: { label: ['A', 'B'] } }])),
    code: TASK, message: /test\.jsonl:2\b.*choices\.text/,
  },
  {
    name: 'task-choices-not-a-list',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([{ ...ARC, choices: { text: 'the sun', label: ['A'] } }])),
    code: TASK, message: /test\.jsonl:1\b.*(choices|gold)/,
  },
  {
    name: 'task-gold-out-of-range',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, ARC, { ...ARC, answerKey: 'E' }])),
    code: TASK, message: /test\.jsonl:3\b.*answerKey 'E' is not one of the labels \[A, B, C\]/,
  },
  {
    name: 'task-piqa-label-out-of-range',
    setup: (dir, fx) => evalWith(dir, fx, 'piqa', 'piqa/validation.jsonl', jsonl([{ goal: 'Open a jar', sol1: 'twist', sol2: 'kick', label: 2 }])),
    code: TASK, message: /validation\.jsonl:1\b.*gold.*out of range/,
  },
  {
    name: 'task-winogrande-bad-answer',
    setup: (dir, fx) => evalWith(dir, fx, 'winogrande', 'winogrande/validation.jsonl', jsonl([{ sentence: 'The _ was big.', option1: 'a', option2: 'b', answer: '3' }])),
    code: TASK, message: /validation\.jsonl:1\b.*answer '3' is not one of the labels \[1, 2\]/,
  },
  {
    name: 'task-null-question',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, { ...ARC, question: null }])),
    code: TASK, message: /test\.jsonl:2\b.*field 'question' is null, expected a string/,
  },
  {
    name: 'task-missing-question',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC, ARC, { id: 'a3', choices: ARC.choices, answerKey: 'A' }])),
    code: TASK, message: /test\.jsonl:3\b.*field 'question' is missing, expected a string/,
  },
  {
    name: 'task-parquet-null-text',
    setup: (dir, fx) => {
      const file = path.join(dir, 'data', 'piqa', 'validation.parquet')
      fs.mkdirSync(path.dirname(file), { recursive: true })
      parquetWriteFile({ filename: file, columnData: [{ name: 'goal', data: ['Open a jar', null], type: 'STRING' }, { name: 'sol1', data: ['twist', 'towel'], type: 'STRING' }, { name: 'sol2', data: ['kick', 'fork'], type: 'STRING' }, { name: 'label', data: [0, 1], type: 'INT32' }] })
      return ['eval', '--model', fx.baseModel, '--tasks', 'piqa', '--data-dir', path.join(dir, 'data')]
    },
    code: TASK, message: /validation\.parquet row 1\b.*field 'goal' is null/,
  },
  {
    name: 'task-lambada-text-not-string',
    setup: (dir, fx) => evalWith(dir, fx, 'lambada-openai', 'lambada_openai/test.jsonl', jsonl([{ text: 'a fine sentence here' }, { text: 12345 }])),
    code: TASK, message: /test\.jsonl:2\b/,
  },
  {
    name: 'task-empty-file',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', ''),
    code: TASK, message: /test\.jsonl has no documents/,
  },
  {
    name: 'task-only-blank-lines',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', '\n   \n\n'),
    code: TASK, message: /test\.jsonl has no documents/,
  },
  {
    name: 'task-invalid-utf8',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', Buffer.concat([Buffer.from(jsonl([ARC])), Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a])])),
    code: TASK, message: /test\.jsonl:2\b.*UTF-8/,
  },
  {
    name: 'task-binary-file',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', garbage(5000, 11)),
    code: TASK, message: /test\.jsonl.*(NUL|UTF-8|JSON)/,
  },
  {
    name: 'task-parquet-garbage',
    setup: (dir, fx) => evalWith(dir, fx, 'piqa', 'piqa/validation.parquet', garbage(3000, 5)),
    code: TASK, message: /validation\.parquet/,
  },
  {
    name: 'task-parquet-missing-column',
    setup: (dir, fx) => {
      const file = path.join(dir, 'data', 'piqa', 'validation.parquet')
      fs.mkdirSync(path.dirname(file), { recursive: true })
      parquetWriteFile({ filename: file, columnData: [{ name: 'goal', data: ['Open a jar', 'Dry hair'] }, { name: 'sol1', data: ['twist', 'towel'] }, { name: 'sol2', data: ['kick', 'fork'] }] })
      return ['eval', '--model', fx.baseModel, '--tasks', 'piqa', '--data-dir', path.join(dir, 'data')]
    },
    code: TASK, message: /validation\.parquet row 0\b.*'label' is missing/,
  },
  {
    name: 'task-jsonl-bom-and-crlf-is-valid',
    setup: (dir, fx) => evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', '\uFEFF' + [ARC, { ...ARC, id: 'a2', answerKey: 'B' }].map(r => JSON.stringify(r)).join('\r\n') + '\r\n'),
    code: 'OK', message: /arc-easy/,
  },
  {
    name: 'task-data-is-a-folder',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'data', 'arc_easy', 'test.jsonl'), { recursive: true }); return ['eval', '--model', fx.baseModel, '--tasks', 'arc-easy', '--data-dir', path.join(dir, 'data')] },
    code: TASK, message: /test\.jsonl is a folder/,
  },
  {
    name: 'task-data-unreadable', unprivileged: true,
    setup: (dir, fx) => {
      const args = evalWith(dir, fx, 'arc-easy', 'arc_easy/test.jsonl', jsonl([ARC]))
      fs.chmodSync(path.join(dir, 'data', 'arc_easy', 'test.jsonl'), 0o000)
      return args
    },
    code: TASK, message: /permission denied on .*test\.jsonl/,
  },
  {
    name: 'task-data-missing',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'data')); return ['eval', '--model', fx.baseModel, '--tasks', 'arc-easy', '--data-dir', path.join(dir, 'data')] },
    code: 'TASK_DATA_MISSING', message: /arc_easy\/test\.jsonl/,
  },
  {
    name: 'task-unknown-name',
    setup: (_dir, fx) => ['eval', '--model', fx.baseModel, '--tasks', 'arc-eassy'],
    code: 'UNKNOWN_NAME', message: /arc-eassy.*arc-easy/,
  },
]
