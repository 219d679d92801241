// Task records are checked on load for every adapter (built-in, standard, plugin): a field the prompt
// uses as text that is null or absent, an answer key outside the labels, a malformed data file given as
// calibration source, and `tasks` agreeing with what `eval` accepts.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parquetWriteFile } from 'hyparquet-writer'
import { calibrationFingerprint } from '../../src/calibration/source.ts'
import { HarnessError } from '../../src/errors.ts'
import { defineTask } from '../../src/tasks/defineTask.ts'
import { loadTask, loadTaskDocs } from '../../src/tasks/registry.ts'
import { runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { garbage } from '../malformed/fixtures.ts'

const ARC = { id: 'a1', question: 'Which of these is a source of light?', choices: { text: ['the sun', 'a rock', 'a shoe', 'a box'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'A' }

/** A valid record of each standard adapter (HF schemas), its data file, and the text fields its prompt reads. */
const STANDARD: Record<string, { file: string; record: Record<string, unknown>; textFields: string[] }> = {
  'arc-easy': { file: 'arc_easy/test.jsonl', record: ARC, textFields: ['question', 'choices.text[1]'] },
  'arc-challenge': { file: 'arc_challenge/test.jsonl', record: ARC, textFields: ['question'] },
  boolq: { file: 'boolq/validation.jsonl', record: { question: 'is the sky blue', passage: 'The sky is blue.', label: 1 }, textFields: ['question', 'passage'] },
  copa: { file: 'copa/validation.jsonl', record: { premise: 'The man broke his toe.', choice1: 'He dropped a hammer.', choice2: 'He sang.', question: 'cause', label: 0 }, textFields: ['premise', 'choice1', 'choice2'] },
  hellaswag: {
    file: 'hellaswag/validation.jsonl',
    record: { activity_label: 'Running', ctx_a: 'A man ties his shoes.', ctx_b: 'he', endings: ['runs.', 'sleeps.', 'eats.', 'reads.'], label: '0' },
    textFields: ['activity_label', 'ctx_a', 'ctx_b', 'endings[2]'],
  },
  'lambada-openai': { file: 'lambada_openai/test.jsonl', record: { text: 'He put the milk back in the fridge' }, textFields: ['text'] },
  mmlu: { file: 'mmlu/test.jsonl', record: { question: 'What is 2 + 2?', subject: 'elementary_mathematics', choices: ['3', '4', '5', '6'], answer: 1 }, textFields: ['question', 'subject', 'choices[3]'] },
  openbookqa: { file: 'openbookqa/test.jsonl', record: { id: 'o1', question_stem: 'The sun is', choices: { text: ['hot', 'cold', 'wet', 'blue'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'A' }, textFields: ['question_stem', 'choices.text[0]'] },
  piqa: { file: 'piqa/validation.jsonl', record: { goal: 'Open a jar', sol1: 'twist the lid', sol2: 'kick it', label: 0 }, textFields: ['goal', 'sol1', 'sol2'] },
  rte: { file: 'rte/validation.jsonl', record: { sentence1: 'A dog runs.', sentence2: 'An animal moves.', label: 0 }, textFields: ['sentence1', 'sentence2'] },
  wikitext: { file: 'wikitext/test.jsonl', record: { page: ' = Tower = \n It is tall . \n' }, textFields: ['page'] },
  winogrande: { file: 'winogrande/validation.jsonl', record: { sentence: 'The cup fell because the _ was slick.', option1: 'cup', option2: 'table', answer: '1' }, textFields: ['sentence', 'option1', 'option2'] },
}

const root = tmpDir()
let n = 0

/** Writes `records` as the task's data file in a fresh data folder and returns the folder. */
function dataWith(file: string, records: unknown[]): string {
  const dir = path.join(root, `d${n++}`)
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
  fs.writeFileSync(path.join(dir, file), records.map(r => JSON.stringify(r)).join('\n') + '\n')
  return dir
}

/** `record` with the field at `fieldPath` ('a.b[2]') set to null, or deleted when `value` is undefined. */
function withField(record: Record<string, unknown>, fieldPath: string, value: null | undefined): Record<string, unknown> {
  const copy = structuredClone(record)
  const keys = fieldPath.replace(/\[(\d+)\]/g, '.$1').split('.')
  let at: any = copy
  for (const k of keys.slice(0, -1)) at = at[k]
  const last = keys[keys.length - 1]
  if (value === undefined && !Array.isArray(at)) delete at[last]
  else if (value === undefined) at.length = Number(last) // an absent list element: the list is one shorter
  else at[last] = value
  return copy
}

async function loadError(promise: Promise<unknown>): Promise<HarnessError> {
  try {
    await promise
  } catch (e) {
    assert.ok(e instanceof HarnessError, `expected a HarnessError, got ${e}`)
    return e
  }
  assert.fail('expected the load to fail')
}

describe('task records: text fields that are null or missing', () => {
  for (const [name, { file, record, textFields }] of Object.entries(STANDARD)) {
    it(`${name}: the valid record loads, each text field null or missing is TASK_INVALID naming the field and line`, async () => {
      const task = await loadTask(name)
      const { docs } = await loadTaskDocs(task, dataWith(file, [record]))
      assert.equal(docs.length, 1)
      for (const field of textFields) {
        for (const value of [null, undefined]) {
          // An absent list element shortens the list: only the last element can be absent.
          if (value === undefined && /\[\d+\]$/.test(field) && !/\[3\]$/.test(field)) continue
          const e = await loadError(loadTaskDocs(task, dataWith(file, [record, withField(record, field, value)])))
          assert.equal(e.code, 'TASK_INVALID', `${name}.${field}=${value}: ${e.message}`)
          assert.match(e.message, /\.jsonl:2 is invalid/, `${name}.${field}=${value}: ${e.message}`)
          const base = field.replace(/\[\d+\]$/, '')
          assert.ok(e.message.includes(`field '${field}'`) || e.message.includes(`field '${base}'`) || e.message.includes(base.split('.')[0]),
            `${name}.${field}=${value} does not name the field: ${e.message}`)
        }
      }
    })
  }

  it('the fresh-user repro: ARC "question": null and no "question" are named exactly', async () => {
    const task = await loadTask('arc-easy')
    const nul = await loadError(loadTaskDocs(task, dataWith('arc_easy/test.jsonl', [ARC, { ...ARC, question: null }])))
    assert.match(nul.message, /test\.jsonl:2 is invalid: field 'question' is null, expected a string/)
    const { question: _, ...noQuestion } = ARC
    const missing = await loadError(loadTaskDocs(task, dataWith('arc_easy/test.jsonl', [ARC, ARC, noQuestion])))
    assert.match(missing.message, /test\.jsonl:3 is invalid: field 'question' is missing, expected a string/)
  })

  it('parquet rows with a null text column are rejected the same way (row index named)', async () => {
    const dir = path.join(root, 'pq')
    const file = path.join(dir, 'piqa', 'validation.parquet')
    fs.mkdirSync(path.dirname(file), { recursive: true })
    parquetWriteFile({
      filename: file,
      columnData: [
        { name: 'goal', data: ['Open a jar', null], type: 'STRING' },
        { name: 'sol1', data: ['twist', 'towel'], type: 'STRING' },
        { name: 'sol2', data: ['kick', 'fork'], type: 'STRING' },
        { name: 'label', data: [0, 1], type: 'INT32' },
      ],
    })
    const e = await loadError(loadTaskDocs(await loadTask('piqa'), dir))
    assert.match(e.message, /validation\.parquet row 1 is invalid: field 'goal' is null, expected a string/)
  })

  it('plugin tasks are covered without declaring a schema; a null field read only for a default passes', async () => {
    const dir = dataWith('plugin.jsonl', [{ title: null, body: 'Some text here', tag: null }])
    const file = path.join(dir, 'plugin.jsonl')
    const usesDefault = defineTask<{ title: string | null; body: string }>({
      name: 'plugin-default', version: 1, description: '', kind: 'rolling', data: { files: [file], howToGet: '' },
      prompt: doc => ({ text: `${doc.title ?? ''}${doc.body}` }), metrics: ['word_perplexity'], primaryMetric: 'word_perplexity',
    })
    const { docs } = await loadTaskDocs(usesDefault, dir)
    assert.equal(docs.length, 1)
    const usesNull = defineTask<{ tag: string; body: string }>({
      name: 'plugin-text', version: 1, description: '', kind: 'multiple_choice', data: { files: [file], howToGet: '' },
      prompt: doc => ({ context: `[${doc.tag}] ${doc.body}`, choices: ['a', 'b'], gold: 0 }), metrics: ['acc'], primaryMetric: 'acc',
    })
    const e = await loadError(loadTaskDocs(usesNull, dir))
    assert.match(e.message, /plugin\.jsonl:1 is invalid: field 'tag' is null, expected a string/)
    const viaProcess = defineTask<{ text: string }>({
      name: 'plugin-process', version: 1, description: '', kind: 'rolling', data: { files: [file], howToGet: '' },
      process: r => ({ text: `${r.title}: ${r.body}` }), prompt: doc => ({ text: doc.text }), metrics: ['word_perplexity'], primaryMetric: 'word_perplexity',
    })
    assert.match((await loadError(loadTaskDocs(viaProcess, dir))).message, /field 'title' is null, expected a string/)
  })
})

describe('task records: answer keys outside the labels', () => {
  it('ARC answerKey E among labels A-D names the key and the labels', async () => {
    const e = await loadError(loadTaskDocs(await loadTask('arc-easy'), dataWith('arc_easy/test.jsonl', [ARC, { ...ARC, answerKey: 'E' }])))
    assert.equal(e.code, 'TASK_INVALID')
    assert.match(e.message, /test\.jsonl:2 is invalid: answerKey 'E' is not one of the labels \[A, B, C, D\]/)
  })
  it('openbookqa, winogrande and copa name their key field too; numeric ARC labels still load', async () => {
    const obqa = STANDARD.openbookqa.record
    assert.match((await loadError(loadTaskDocs(await loadTask('openbookqa'), dataWith('openbookqa/test.jsonl', [{ ...obqa, answerKey: 'Z' }])))).message,
      /answerKey 'Z' is not one of the labels \[A, B, C, D\]/)
    const wino = STANDARD.winogrande.record
    assert.match((await loadError(loadTaskDocs(await loadTask('winogrande'), dataWith('winogrande/validation.jsonl', [{ ...wino, answer: '3' }])))).message,
      /answer '3' is not one of the labels \[1, 2\]/)
    const copa = STANDARD.copa.record
    assert.match((await loadError(loadTaskDocs(await loadTask('copa'), dataWith('copa/validation.jsonl', [{ ...copa, question: 'reason' }])))).message,
      /question 'reason' is not one of the labels \[cause, effect\]/)
    const numeric = { ...ARC, choices: { text: ['a', 'b', 'c', 'd'], label: ['1', '2', '3', '4'] }, answerKey: '3' }
    const { docs } = await loadTaskDocs(await loadTask('arc-easy'), dataWith('arc_easy/test.jsonl', [numeric]))
    const task = await loadTask('arc-easy')
    assert.equal(task.kind === 'multiple_choice' && task.prompt(docs[0].doc).gold, 2)
  })
})

describe('calibration files that are not records', () => {
  const spec = (source: string) => ({ source, sequences: 1, length: 8, seed: 1 })
  for (const ext of ['jsonl', 'parquet', 'txt']) {
    it(`random bytes as .${ext} are CALIBRATION_FAILED naming the file`, async () => {
      const file = path.join(root, `rand.${ext}`)
      fs.writeFileSync(file, garbage(4000, 7))
      const e = await loadError(calibrationFingerprint(spec(file)))
      assert.equal(e.code, 'CALIBRATION_FAILED', e.message)
      assert.ok(e.message.includes(file), e.message)
    })
  }
  it('a jsonl line that is not an object is CALIBRATION_FAILED with its line; a valid file still works', async () => {
    const file = path.join(root, 'cal.jsonl')
    fs.writeFileSync(file, '{"text": "fine"}\n[1, 2]\n')
    const e = await loadError(calibrationFingerprint(spec(file)))
    assert.equal(e.code, 'CALIBRATION_FAILED')
    assert.match(e.message, /cal\.jsonl:2 is an array/)
    fs.writeFileSync(file, '{"text": "fine"}\n{"text": "also fine"}\n')
    assert.match(await calibrationFingerprint(spec(file)), /^file:[0-9a-f]{64}:text$/)
  })
})

describe('moe-harness tasks', () => {
  it('validates data as eval does, and says which folder it searched for missing data', () => {
    const dir = dataWith('arc_easy/test.jsonl', [ARC, { ...ARC, question: null }])
    fs.mkdirSync(path.join(dir, 'piqa'))
    fs.writeFileSync(path.join(dir, 'piqa', 'validation.jsonl'), [STANDARD.piqa.record, STANDARD.piqa.record].map(r => JSON.stringify(r)).join('\n') + '\n')
    const r = runCli(['tasks', '--data-dir', dir, '--json'])
    assert.equal(r.status, 0, r.stderr)
    const rows = JSON.parse(r.stdout) as { name: string; items: number | null; invalid?: string; searched?: string }[]
    const row = (name: string) => rows.find(x => x.name === name)!
    assert.equal(row('arc-easy').items, null)
    assert.match(row('arc-easy').invalid!, /TASK_INVALID: .*test\.jsonl:2 is invalid: field 'question' is null/)
    assert.equal(row('piqa').items, 2)
    assert.equal(row('piqa').invalid, undefined)
    assert.equal(row('boolq').searched, dir)
    const text = runCli(['tasks', '--data-dir', dir])
    assert.match(text.stdout, /arc-easy\s+multiple_choice\s+invalid/)
    assert.match(text.stdout, /→ invalid: TASK_INVALID: .*field 'question' is null/)
    assert.ok(text.stdout.includes(`→ no data in ${dir}: Download the validation split of aps/super_glue (config boolq)`), text.stdout)
  })
})
