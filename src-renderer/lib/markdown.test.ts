import { describe, expect, it } from 'vitest';
import { conversationMarkdown, exportFileName } from './markdown.ts';

describe('conversation as Markdown', () => {
  const base = {
    videoName: 'beach_day.mp4',
    range: { from: 2, to: 5.5 },
    frameTimes: [2.2, 3.1],
    model: 'builtin-shapes@1.0.0',
  };

  it('lists the clip, the frames and each question with its answer', () => {
    const md = conversationMarkdown({
      ...base,
      turns: [{ question: 'What color is the circle?', answer: 'red', status: 'eos' }],
    });
    expect(md).toContain('# beach\\_day.mp4 — 0:02.0–0:05.5');
    expect(md).toContain('Frames seen: 0:02.2, 0:03.1');
    expect(md).toContain('**Q:** What color is the circle?');
    expect(md).toContain('**A:** red');
  });

  it('says when an answer was stopped or failed', () => {
    const md = conversationMarkdown({
      ...base,
      turns: [
        { question: 'a', answer: 'partial', status: 'cancelled' },
        { question: 'b', answer: '', status: 'error' },
      ],
    });
    expect(md).toContain('partial _(stopped before the end)_');
    expect(md).toContain('**A:** — _(no answer: an error occurred)_');
  });

  it('keeps questions from becoming Markdown structure', () => {
    expect(
      conversationMarkdown({ ...base, turns: [{ question: '# *hi*', answer: 'x', status: 'eos' }] }),
    ).toContain('**Q:** \\# \\*hi\\*');
  });

  it('makes a safe file name', () => {
    expect(exportFileName('My clip (1).mov', { from: 0, to: 65 })).toBe('My-clip-1-_0-00-0_1-05-0.md');
  });
});
