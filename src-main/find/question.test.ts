import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoupeError } from '../errors.ts';
import { loadPack } from '../model/pack.ts';
import { PromptBuilder } from '../model/prompt.ts';
import { builtinPackDir } from '../paths.ts';
import { answerIds, presenceQuestion, yesProbability } from './question.ts';

describe('the presence question', () => {
  it('turns a query into a yes/no question and keeps a question as it is', () => {
    expect(presenceQuestion('red circle')).toBe('Is there a red circle?');
    expect(presenceQuestion(' an  orange square. ')).toBe('Is there an orange square?');
    expect(presenceQuestion('Do you see a dog?')).toBe('Do you see a dog?');
    expect(() => presenceQuestion('  ')).toThrow(LoupeError);
  });
});

describe('yes/no token ids from the pack', () => {
  it("finds the built-in pack's single-token answers after its chat template", async () => {
    const prompt = await PromptBuilder.load(await loadPack(builtinPackDir()));
    const ids = answerIds(prompt, 'Is there a red circle?');
    expect(ids.yes.map((id) => prompt.decode([id]).trim())).toContain('yes');
    expect(ids.no.map((id) => prompt.decode([id]).trim().toLowerCase())).toContain('no');
    const logits = new Float32Array(640);
    logits[ids.yes[0]!] = 2;
    expect(yesProbability(logits, ids)).toBeGreaterThan(0.5);
  });

  it('refuses a pack whose tokenizer cannot write "yes" as one token (character-level)', async () => {
    const pack = await loadPack(builtinPackDir());
    const json = JSON.parse(await readFile(pack.file('tokenizer'), 'utf8'));
    const special = new Set(json.added_tokens.map((t: { content: string }) => t.content));
    json.model.vocab = Object.fromEntries(
      Object.entries(json.model.vocab).filter(([k]) => [...k].length === 1 || special.has(k)),
    );
    json.model.merges = [];
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'loupe-tok-')), 'tokenizer.json');
    await writeFile(file, JSON.stringify(json));
    const prompt = await PromptBuilder.load({
      ...pack,
      file: (n) => (n === 'tokenizer' ? file : pack.file(n)),
    });
    expect(() => answerIds(prompt, 'Is there a red circle?')).toThrow(/cannot answer yes or no/);
  });
});
