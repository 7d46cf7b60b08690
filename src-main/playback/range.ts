/**
 * Serving a local video file with HTTP range requests (what <video> needs to seek). One pure parser and one
 * response builder, used both by web mode (node:http) and by Electron's `loupe-media://` protocol.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

export type ByteRange = { start: number; end: number };

/**
 * Parse a `Range:` header against a file of `size` bytes. Returns null for no (or an ignorable) header,
 * 'unsatisfiable' for a range outside the file; only single ranges are served (multipart is not needed by players).
 */
export function parseRange(
  header: string | null | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | null {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null; // malformed or multi-range: RFC 9110 lets a server ignore it and send the whole file
  const [, a, b] = match;
  if (a === '' && b === '') return null;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
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
