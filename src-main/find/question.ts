/**
 * The presence question asked at every instant, and the ids of "yes" and "no" as the pack's tokenizer writes
 * them right after its chat template's answer prompt, so that any pack whose tokenizer has them can score.
 */
import { LoupeError } from '../errors.ts';
import type { PromptBuilder } from '../model/prompt.ts';

/** "red circle" → "Is there a red circle?"; a query already phrased as a question is asked as it is. */
export function presenceQuestion(query: string): string {
  const q = query.trim().replace(/\s+/g, ' ');
  if (!q) throw new LoupeError('USAGE', 'The query is empty: say what to look for, e.g. "red circle".');
  if (q.length > 200) throw new LoupeError('USAGE', 'The query is longer than 200 characters.');
  if (q.endsWith('?')) return q;
  const subject = q.replace(/^(an?|the|any)\s+/i, '').replace(/[.!]+$/, '');
  const article = /^[aeiou]/i.test(subject) ? 'an' : 'a';
  return `Is there ${article} ${subject}?`;
}

export interface AnswerIds {
  yes: number[];
  no: number[];
}

const VARIANTS = { yes: [' yes', ' Yes', 'yes', 'Yes'], no: [' no', ' No', 'no', 'No'] };

/**
 * The token ids that begin a "yes" and a "no" answer after the rendered prompt of `question`: each spelling
 * that the tokenizer writes as the prompt's own tokens plus exactly one token that decodes to the word.
 * Throws MODEL_INVALID when the pack has no such token for either word.
 */
export function answerIds(prompt: PromptBuilder, question: string): AnswerIds {
  const rendered = prompt.render([prompt.firstUserMessage(question)], true);
  const after = rendered.slice(rendered.lastIndexOf(prompt.imageToken) + prompt.imageToken.length);
  const base = prompt.encode(after);
  const idsFor = (word: 'yes' | 'no') => {
    const ids = new Set<number>();
    for (const spelling of VARIANTS[word]) {
      const full = prompt.encode(after + spelling);
      if (full.length !== base.length + 1 || base.some((id, i) => full[i] !== id)) continue;
      const id = full[base.length]!;
      if (prompt.decode([id]).trim().toLowerCase() === word) ids.add(id);
    }
    return [...ids];
  };
  const ids = { yes: idsFor('yes'), no: idsFor('no') };
  if (!ids.yes.length || !ids.no.length || ids.yes.some((id) => ids.no.includes(id)))
    throw new LoupeError(
      'MODEL_INVALID',
      'This model pack cannot answer yes or no: after its chat template, its tokenizer has no single token ' +
        `for ${ids.yes.length ? '"no"' : '"yes"'}, so Loupe cannot score moments with it. Use another pack.`,
      { yes: ids.yes, no: ids.no },
    );
  return ids;
}

/** P(yes) / (P(yes) + P(no)) from next-token logits (softmax over the whole vocabulary, then the ratio). */
export function yesProbability(logits: Float32Array, ids: AnswerIds): number {
  let max = -Infinity;
  for (const id of [...ids.yes, ...ids.no]) max = Math.max(max, logits[id]!);
  const mass = (list: number[]) => list.reduce((sum, id) => sum + Math.exp(logits[id]! - max), 0);
  const yes = mass(ids.yes);
  const no = mass(ids.no);
  return yes / (yes + no);
}
