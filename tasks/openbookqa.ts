import { defineTask, labelIndex, pyLstrip } from '../src/index.ts'

interface ObqaDoc { id: string; question_stem: string; choices: { text: string[]; label: string[] }; answerKey: string }

export default defineTask<ObqaDoc>({
  name: 'openbookqa',
  version: 2,
  description: 'OpenBookQA (main config, test split, 500 questions); lm-eval prompt: the bare question stem.',
  kind: 'multiple_choice',
  data: {
    files: ['openbookqa/test.jsonl', 'openbookqa/test.parquet', 'openbookqa/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of allenai/openbookqa (config main) and save it as openbookqa/test.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({ context: doc.question_stem, choices: doc.choices.text, gold: labelIndex(doc.choices.label, pyLstrip(doc.answerKey), 'answerKey') }),
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc_norm',
  source: { upstream: 'openbookqa', dataset: 'allenai/openbookqa main', url: 'https://huggingface.co/datasets/allenai/openbookqa' },
})
