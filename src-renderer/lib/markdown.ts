/** A conversation as Markdown, for Copy and Export. */
import { formatClock } from './timeline-math.ts';

export interface MarkdownTurn {
  question: string;
  answer: string;
  status: string;
}

export interface MarkdownConversation {
  videoName: string;
  range: { from: number; to: number };
  frameTimes: number[];
  model?: string;
  date?: string;
  turns: MarkdownTurn[];
}

const NOTE: Record<string, string> = {
  cancelled: '_(stopped before the end)_',
  length: '_(cut at the maximum answer length)_',
  error: '_(no answer: an error occurred)_',
};

export function conversationMarkdown(c: MarkdownConversation): string {
  const lines = [
    `# ${escapeInline(c.videoName)} — ${formatClock(c.range.from)}–${formatClock(c.range.to)}`,
    '',
    `- Frames seen: ${c.frameTimes.map((t) => formatClock(t)).join(', ') || 'none'}`,
  ];
  if (c.model) lines.push(`- Model: ${c.model}`);
  if (c.date) lines.push(`- Date: ${c.date}`);
  for (const t of c.turns) {
    lines.push(
      '',
      `**Q:** ${escapeInline(t.question)}`,
      '',
      `**A:** ${t.answer.trim() || '—'}${NOTE[t.status] ? ' ' + NOTE[t.status] : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Keep user text from turning into Markdown structure. */
function escapeInline(text: string): string {
  return text.replace(/([\\`*_[\]#<>])/g, '\\$1').replace(/\n+/g, ' ');
}

/** A file name for the export: the video's name and the range, without path-hostile characters. */
export function exportFileName(videoName: string, range: { from: number; to: number }): string {
  const stem = videoName.replace(/\.[^.]+$/, '').replace(/[^\w.-]+/g, '-');
  return `${stem}_${formatClock(range.from).replace(/[:.]/g, '-')}_${formatClock(range.to).replace(/[:.]/g, '-')}.md`;
}
