/**
 * Output formats of a batch, each written incrementally (a header, one chunk per record, a closing
 * summary) so results stream to the file as clips complete:
 *   jsonl  one ResultRecord per line (the journal's own format)
 *   csv    RFC 4180 (csv-stringify); one row per clip and prompt, plus one row per segment answer
 *   md     a report: a section per clip, segment answers as a table, a summary of failures at the end
 * Pure string functions; output.ts does the files.
 */
import { stringify } from 'csv-stringify/sync';
import { formatTime } from '../media/frame-times.ts';
import type { OutputFormat } from './formats.ts';
import { recordFailed, type ResultRecord } from './record.ts';

export { OUTPUT_FORMATS, formatFromPath, parseFormat, type OutputFormat } from './formats.ts';

export interface Exporter {
  /** Written once when the file is created. */
  header(): string;
  record(record: ResultRecord): string;
  /** Written once at the end of a complete batch (Markdown's summary); may be empty. */
  footer(records: readonly ResultRecord[]): string;
}

export function exporterFor(format: OutputFormat): Exporter {
  if (format === 'csv') return csvExporter();
  if (format === 'md') return markdownExporter();
  return { header: () => '', record: (r) => JSON.stringify(r) + '\n', footer: () => '' };
}

/** A whole file in `format` (what a stream of header, records and footer adds up to). */
export function renderRecords(
  format: OutputFormat,
  records: readonly ResultRecord[],
  complete = true,
): string {
  const exporter = exporterFor(format);
  return (
    exporter.header() +
    records.map((r) => exporter.record(r)).join('') +
    (complete ? exporter.footer(records) : '')
  );
}

// ── CSV ──────────────────────────────────────────────────────────────────────────────────────────────

export const CSV_COLUMNS = [
  'path',
  'rel_path',
  'prompt',
  'segment_from',
  'segment_to',
  'duration_sec',
  'answer',
  'frame_times',
  'model',
  'provider',
  'prepare_ms',
  'answer_ms',
  'error_code',
  'error_message',
] as const;

/**
 * One CSV line (RFC 4180, CRLF; csv-stringify): a field is quoted when it holds a comma, quote, CR or LF, or
 * leading/trailing spaces (which spreadsheet programs would otherwise trim).
 */
export function csvLine(fields: readonly (string | number | null | undefined)[]): string {
  return stringify([fields.map((f) => f ?? '')], { record_delimiter: 'windows', quoted_match: CSV_QUOTED });
}
const CSV_QUOTED = [/^\s|\s$/, /[\r\n]/];

/** The rows of one record: the clip's answer, then one row per segment answer. */
export function csvRows(r: ResultRecord): (string | number | null)[][] {
  const ms = (n: number) => Math.round(n);
  const rows: (string | number | null)[][] = [
    [
      r.path,
      r.relPath,
      r.prompt,
      null,
      null,
      r.durationSec,
      r.answer,
      r.frames.join(' '),
      r.model,
      r.provider,
      ms(r.timings.prepareMs),
      ms(r.timings.answerMs),
      r.error?.code ?? null,
      r.error?.message ?? null,
    ],
  ];
  for (const s of r.segments ?? [])
    rows.push([
      r.path,
      r.relPath,
      r.prompt,
      s.from,
      s.to,
      r.durationSec,
      s.answer,
      s.frames.join(' '),
      r.model,
      r.provider,
      null,
      null,
      s.error?.code ?? null,
      s.error?.message ?? null,
    ]);
  return rows;
}

function csvExporter(): Exporter {
  return {
    header: () => csvLine(CSV_COLUMNS),
    record: (r) => csvRows(r).map(csvLine).join(''),
    footer: () => '',
  };
}

// ── Markdown ─────────────────────────────────────────────────────────────────────────────────────────

/** Inline code that survives backticks in the text. */
function code(text: string): string {
  const fence = '`'.repeat(Math.max(0, ...(text.match(/`+/g) ?? []).map((m) => m.length)) + 1);
  return fence.length > 1 ? `${fence} ${text} ${fence}` : `\`${text}\``;
}

/** Text inside a table cell: no pipes or line breaks. */
function cell(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('|', '\\|').replace(/\r?\n/g, '<br>');
}

/** Text in a paragraph: nothing that would start a heading, list or HTML block. */
function paragraph(text: string): string {
  return text.replace(/[<>*_#[\]\\]/g, (ch) => `\\${ch}`).replace(/\r?\n/g, '  \n');
}

function markdownExporter(): Exporter {
  let lastClip: string | null = null;
  return {
    header: () => '# Loupe batch report\n\n',
    record: (r) => {
      let out = '';
      if (r.relPath !== lastClip) {
        lastClip = r.relPath;
        const facts = [
          r.durationSec !== null ? formatTime(r.durationSec) : null,
          r.frames.length ? `frames at ${r.frames.map(formatTime).join(', ')}` : null,
        ].filter(Boolean);
        out += `## ${code(r.relPath)}\n\n${facts.length ? `_${facts.join(' · ')}_\n\n` : ''}`;
      }
      out += r.error
        ? `**${paragraph(r.prompt)}** — ⚠ failed: ${r.error.code}: ${paragraph(r.error.message)}\n\n`
        : `**${paragraph(r.prompt)}** ${paragraph(r.answer ?? '')}\n\n`;
      if (r.segments?.length) {
        out += '| from | to | answer |\n|---:|---:|---|\n';
        for (const s of r.segments)
          out += `| ${formatTime(s.from)} | ${formatTime(s.to)} | ${cell(s.error ? `⚠ ${s.error.code}: ${s.error.message}` : (s.answer ?? ''))} |\n`;
        out += '\n';
      }
      return out;
    },
    footer: (records) => {
      const clips = new Set(records.map((r) => r.relPath));
      const failed = records.filter(recordFailed);
      const failedClips = new Set(failed.map((r) => r.relPath));
      const model = records.find((r) => r.model)?.model;
      let out =
        `## Summary\n\n${clips.size} clips, ${records.length} answers, ${failedClips.size} failed` +
        `${model ? ` (model ${code(model)}, ${records.find((r) => r.provider)?.provider ?? '?'})` : ''}.\n`;
      if (failed.length) {
        out += '\n### Failures\n\n';
        const seen = new Set<string>();
        for (const r of failed) {
          if (seen.has(r.relPath)) continue;
          seen.add(r.relPath);
          const e = r.error ?? r.segments!.find((s) => s.error)!.error!;
          out += `- ${code(r.relPath)}: ${e.code}: ${paragraph(e.message)}\n`;
        }
      }
      return out;
    },
  };
}
