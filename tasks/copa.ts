import { defineTask, labelIndex, pyDropLast, pyHeadTail, pyLower, pyStrip } from '../src/index.ts'

interface CopaDoc { premise: string; choice1: string; choice2: string; question: 'cause' | 'effect'; label: number }

/** copa/utils.py convert_choice: choice[0].lower() + choice[1:] (by code points, as Python indexes). */
const lowerFirst = (s: string) => { const [head, tail] = pyHeadTail(s); return pyLower(head) + tail }

export default defineTask<CopaDoc>({
  name: 'copa',
  version: 2,
  description: 'COPA (SuperGLUE, validation split, 100 items); lm-eval super_glue/copa utils: the premise without its final period plus "because"/"therefore", choices " " + first letter lower-cased (so with the default target delimiter the continuation starts with two spaces, as in lm-eval).',
  kind: 'multiple_choice',
  data: {
    files: ['copa/validation.jsonl', 'copa/validation.parquet', 'copa/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of aps/super_glue (config copa) and save it as copa/validation.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({
    context: `${pyDropLast(pyStrip(doc.premise))} ${['because', 'therefore'][labelIndex(['cause', 'effect'], doc.question, 'question')]}`,
    choices: [` ${lowerFirst(doc.choice1)}`, ` ${lowerFirst(doc.choice2)}`],
    gold: doc.label,
  }),
  metrics: ['acc'],
  primaryMetric: 'acc',
  source: { upstream: 'copa', dataset: 'aps/super_glue copa', url: 'https://huggingface.co/datasets/aps/super_glue' },
})
