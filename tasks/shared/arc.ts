import { labelIndex, type MultipleChoicePrompt } from '../../src/index.ts'

export interface ArcDoc { id: string; question: string; choices: { text: string[]; label: string[] }; answerKey: string }

/** lm-eval arc: "Question: {question}\nAnswer:", choices.text, gold = label index of answerKey (A-E or 1-4). */
export function arcPrompt(doc: ArcDoc): MultipleChoicePrompt {
  return { context: `Question: ${doc.question}\nAnswer:`, choices: doc.choices.text, gold: labelIndex(doc.choices.label, doc.answerKey, 'answerKey') }
}
