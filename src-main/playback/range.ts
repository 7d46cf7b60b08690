/**
 * Serving a local video file with HTTP range requests (what <video> needs to seek). One pure parser and one
 * response builder, used both by web mode (node:http) and by Electron's `loupe-media://` protocol.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import rangeParser from 'range-parser';

export type ByteRange = { start: number; end: number };

/**
 * Parse a `Range:` header against a file of `size` bytes (range-parser, overlapping ranges combined). Returns null
 * for no (or an ignorable) header, 'unsatisfiable' for a range outside the file; only single byte ranges are
 * served (multipart is not needed by players): malformed, multi-range or non-byte headers get the whole file, as
 * RFC 9110 allows.
 */
export function parseRange(
  header: string | null | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | null {
  if (!header) return null;
  const parsed = rangeParser(size, header.trim(), { combine: true });
  if (parsed === -2) return null;
  if (parsed === -1) {
    // RFC 9110 §14.1.2: a suffix longer than the file means the whole file (range-parser calls it unsatisfiable).
    const suffix = /^bytes=-(\d+)$/.exec(header.trim());
    return suffix && Number(suffix[1]) > 0 && size > 0 ? { start: 0, end: size - 1 } : 'unsatisfiable';
  }
  if (parsed.type !== 'bytes' || parsed.length !== 1) return null;
  return { start: parsed[0]!.start, end: parsed[0]!.end };
}

const MIME: Record<string, string> = {
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.mov': 'video/mp4', // Chromium plays H.264 in QuickTime files when told they are MP4
  '.webm': 'video/webm',
  '.mkv': 'video/webm',
  '.ogv': 'video/ogg',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
};

export function mimeFor(file: string): string {
  return MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

export interface FileReply {
  status: 200 | 206 | 416;
  headers: Record<string, string>;
  /** null for 416 and for HEAD requests. */
  body: Readable | null;
}

/** Build the reply for `file` and an optional Range header. Rejects (ENOENT…) when the file cannot be read. */
export async function fileReply(
  file: string,
  rangeHeader: string | null | undefined,
  head = false,
): Promise<FileReply> {
  const { size } = await stat(file);
  const base = { 'Accept-Ranges': 'bytes', 'Content-Type': mimeFor(file), 'Cache-Control': 'no-store' };
  const range = parseRange(rangeHeader, size);
  if (range === 'unsatisfiable')
    return { status: 416, headers: { ...base, 'Content-Range': `bytes */${size}` }, body: null };
  if (!range)
    return {
      status: 200,
      headers: { ...base, 'Content-Length': String(size) },
      body: head ? null : createReadStream(file),
    };
  return {
    status: 206,
    headers: {
      ...base,
      'Content-Length': String(range.end - range.start + 1),
      'Content-Range': `bytes ${range.start}-${range.end}/${size}`,
    },
    body: head ? null : createReadStream(file, range),
  };
}
