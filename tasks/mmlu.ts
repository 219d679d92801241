import { defineTask, InvalidRecordError, pyStrip } from '../src/index.ts'

interface MmluDoc { question: string; subject: string; choices: string[]; answer: number }

export default defineTask<MmluDoc>({
  name: 'mmlu',
  version: 2,
  description: 'MMLU (57 subjects, test split, 14042 questions), zero-shot with lm-eval\'s per-subject description; the group score is the micro-average over all questions, as lm-eval aggregates it.',
  kind: 'multiple_choice',
  data: {
    files: ['mmlu/test.jsonl', 'mmlu/test.parquet', 'mmlu/all/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of cais/mmlu (config all, with its subject column) and save it as mmlu/test.jsonl or .parquet in the data folder.',
  },
  prompt: doc => {
    // Four lettered options or the prompt would print "D. undefined".
    if (doc.choices?.length !== 4) throw new InvalidRecordError(`choices must be a list of 4 strings (A-D), got ${JSON.stringify(doc.choices)?.slice(0, 60)}`)
    const [a, b, c, d] = doc.choices
    const description = `The following are multiple choice questions (with answers) about ${doc.subject.replaceAll('_', ' ')}.\n\n`
    return { context: `${description}${pyStrip(doc.question)}\nA. ${a}\nB. ${b}\nC. ${c}\nD. ${d}\nAnswer:`, choices: ['A', 'B', 'C', 'D'], gold: doc.answer }
  },
  metrics: ['acc'],
  primaryMetric: 'acc',
  stratifyBy: doc => doc.subject,
  source: { upstream: 'mmlu', dataset: 'cais/mmlu all', url: 'https://huggingface.co/datasets/cais/mmlu' },
})
