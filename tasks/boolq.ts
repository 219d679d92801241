import { defineTask } from '../src/index.ts'

interface BoolqDoc { question: string; passage: string; label: number }

export default defineTask<BoolqDoc>({
  name: 'boolq',
  version: 1,
  description: 'BoolQ (SuperGLUE, validation split, 3270 questions); lm-eval boolq prompt.',
  kind: 'multiple_choice',
  data: {
    files: ['boolq/validation.jsonl', 'boolq/validation.parquet', 'boolq/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of aps/super_glue (config boolq) and save it as boolq/validation.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({ context: `${doc.passage}\nQuestion: ${doc.question}?\nAnswer:`, choices: ['no', 'yes'], gold: doc.label }),
  metrics: ['acc'],
  primaryMetric: 'acc',
  source: { upstream: 'boolq', dataset: 'aps/super_glue boolq', url: 'https://huggingface.co/datasets/aps/super_glue' },
})
