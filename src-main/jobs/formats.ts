/** Output formats of a batch (pure, dependency-free: the CLI parses them before loading the batch engine). */
import { LoupeError } from '../errors.ts';

export type OutputFormat = 'jsonl' | 'csv' | 'md';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['jsonl', 'csv', 'md'];

/** The format a file name implies (jsonl when it implies none). */
export function formatFromPath(file: string): OutputFormat {
  const ext = /\.([^./\\]+)$/.exec(file)?.[1]?.toLowerCase();
  if (ext === 'csv') return 'csv';
  if (ext === 'md' || ext === 'markdown') return 'md';
  return 'jsonl';
}

export function parseFormat(text: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(text)) return text as OutputFormat;
  throw new LoupeError('USAGE', `"${text}" is not an output format: use ${OUTPUT_FORMATS.join(', ')}.`);
}
