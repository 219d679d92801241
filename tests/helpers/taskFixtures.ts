// Small fixture files in the schemas the HF datasets ship (jsonl and parquet), for the standard tasks.
import fs from 'node:fs'
import path from 'node:path'
import { parquetWriteFile } from 'hyparquet-writer'

const arc = [
  { id: 'a1', question: 'Which of these is a source of light?', choices: { text: ['the sun', 'a rock', 'a shoe'], label: ['A', 'B', 'C'] }, answerKey: 'A' },
  { id: 'a2', question: 'What do plants need to grow?', choices: { text: ['sand', 'water', 'plastic', 'metal'], label: ['1', '2', '3', '4'] }, answerKey: '2' },
  { id: 'a3', question: 'Ice melts into', choices: { text: ['steam', 'water', 'stone', 'salt'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'B' },
  { id: 'a4', question: 'A dog is a', choices: { text: ['plant', 'mineral', 'animal', 'planet'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'C' },
  { id: 'a5', question: 'The brown fox is', choices: { text: ['quick', 'lazy', 'blue', 'tall'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'A' },
  { id: 'a6', question: 'Which is the largest?', choices: { text: ['an ant', 'a cat', 'a whale', 'a mouse'], label: ['A', 'B', 'C', 'D'] }, answerKey: 'C' },
]

const piqa = [
  { goal: 'To open a jar', sol1: 'twist the lid.', sol2: 'kick the jar.', label: 0 },
  { goal: 'Dry wet hair', sol1: 'use a towel', sol2: 'use a fork', label: 0 },
  { goal: 'Keep milk cold', sol1: 'put it in the oven', sol2: 'put it in the fridge', label: 1 },
  { goal: 'Cut paper', sol1: 'use scissors', sol2: 'use a spoon', label: 0 },
]

const winogrande = [
  { sentence: 'The trophy did not fit in the suitcase because the _ was too big.', option1: 'trophy', option2: 'suitcase', answer: '1' },
  { sentence: 'Sam thanked Kim because _ had helped with the move.', option1: 'Sam', option2: 'Kim', answer: '2' },
  { sentence: 'The fox jumped over the dog because the _ was lazy.', option1: 'fox', option2: 'dog', answer: '2' },
]

const hellaswag = [
  { ind: 1, activity_label: 'Baking cookies', ctx_a: 'A woman mixes flour and sugar in a bowl.', ctx_b: 'she', endings: ['adds eggs [step] and stirs.', 'throws the bowl away.', 'sings a song.', 'paints the wall.'], source_id: 'x', split: 'val', split_type: 'indomain', label: '0' },
  { ind: 2, activity_label: 'Running', ctx_a: 'A man ties his shoes.', ctx_b: 'he', endings: ['eats his shoes.', 'starts to run down the road.', 'falls asleep.', 'reads a book.'], source_id: 'y', split: 'val', split_type: 'indomain', label: '1' },
  { ind: 3, activity_label: 'Gardening', ctx_a: 'A girl digs a hole.', ctx_b: 'then she', endings: ['plants a seed.', 'flies away.', 'drives a car.', 'opens a door.'], source_id: 'z', split: 'val', split_type: 'zeroshot', label: '0' },
]

const lambada = [
  { text: 'She opened the door and saw her old friend standing on the porch with a smile on his face' },
  { text: 'The quick brown fox jumps over the lazy dog' },
  { text: 'He put the milk back in the fridge' },
]

const wikitext = [
  { page: ' = Valkyria = \n Senjō no Valkyria 3 is a tactical role @-@ playing video game . \n It was released in 2011 . \n' },
  { page: ' = Tower Building = \n The building is 200 ft ( 61 m ) tall , and it has 12 floors . \n' },
]

function writeJsonl(file: string, rows: object[]) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, rows.map(r => JSON.stringify(r)).join('\n') + '\n')
}

function writeParquet(file: string, rows: Record<string, unknown>[]) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const names = Object.keys(rows[0])
  parquetWriteFile({ filename: file, columnData: names.map(name => ({ name, data: rows.map(r => r[name]) as never })) })
}

/** Writes fixtures for arc_easy (jsonl), piqa (parquet), winogrande, hellaswag (parquet), lambada and wikitext. */
export function writeTaskFixtures(dataDir: string): void {
  writeJsonl(path.join(dataDir, 'arc_easy', 'test.jsonl'), arc)
  writeParquet(path.join(dataDir, 'piqa', 'validation.parquet'), piqa)
  writeJsonl(path.join(dataDir, 'winogrande', 'validation.jsonl'), winogrande)
  writeParquet(path.join(dataDir, 'hellaswag', 'validation.parquet'), hellaswag.map(h => ({ ...h, endings: h.endings })))
  writeJsonl(path.join(dataDir, 'lambada_openai', 'test.jsonl'), lambada)
  writeJsonl(path.join(dataDir, 'wikitext', 'test.jsonl'), wikitext)
}

export const FIXTURE_COUNTS = { 'arc-easy': arc.length, piqa: piqa.length, winogrande: winogrande.length, hellaswag: hellaswag.length, 'lambada-openai': lambada.length, wikitext: wikitext.length }
