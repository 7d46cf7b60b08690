/**
 * Input discovery: which files of the given folders and files make up a batch.
 *
 * - A file named on the command line is always in the batch (if it is not a video, it fails with its error).
 * - In a folder: files with a video extension are in; files with a well-known non-video extension (text,
 *   pictures, subtitles, documents, audio, archives) are out; anything else is in when ffprobe recognises a
 *   video in it (or something video-like that is damaged). Hidden files and folders are out.
 * - A file that looks like a video but cannot be read stays in, so the batch reports it as FAILED: nothing
 *   that may be a video is ever skipped silently.
 * Items are sorted by their path relative to the input root, so every run (and every shard) sees one order.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { LoupeError, throwIfAborted } from '../errors.ts';
import { probe } from '../media/index.ts';
import { normalizeRelPath } from './shard.ts';

export interface BatchInput {
  /** Absolute path. */
  path: string;
  /** Relative to the input root, "/" separators. */
  relPath: string;
}

export interface Discovery {
  /** The folder input paths are relative to: the one folder given, or the common parent of all inputs. */
  root: string;
  items: BatchInput[];
  /** Files looked at and left out (not videos), for the "n files ignored" line. */
  ignored: string[];
}

export interface DiscoverOptions {
  recursive?: boolean;
  /** Decides files whose extension says nothing: true when they hold a video (default: ffprobe, see below). */
  recognise?: (file: string, signal?: AbortSignal) => Promise<boolean>;
  /** Absolute paths never to include (the batch's own output and journal). */
  exclude?: readonly string[];
  signal?: AbortSignal;
}

export const VIDEO_EXTENSIONS = new Set(
  'mp4 m4v mov qt mkv webm avi wmv asf flv f4v mpg mpeg mpe m2v vob ts m2ts mts tod 3gp 3g2 ogv ogm mxf dv divx xvid rm rmvb hevc h264 h265 264 265 y4m nut ivf gifv'.split(
    ' ',
  ),
);

/** Extensions that never hold a video: not worth an ffprobe each in a big archive. */
export const NON_VIDEO_EXTENSIONS = new Set(
  (
    'txt md markdown rst json jsonl ndjson csv tsv xml yaml yml toml ini cfg log nfo html htm pdf doc docx odt rtf ' +
    'srt vtt ass ssa sub idx sup lrc ' +
    'jpg jpeg png webp bmp tif tiff heic heif avif dng cr2 nef arw raw psd svg ico ' +
    'mp3 m4a aac wav flac ogg opus wma aif aiff ' +
    'zip tar gz tgz bz2 xz 7z rar zst ' +
    'js mjs cjs py sh exe dll so dylib bin iso dmg db sqlite lock part crdownload tmp bak'
  ).split(' '),
);

/** ffprobe's verdict for files with an unknown extension: a video, or a damaged video-like file. */
export async function recogniseWithProbe(file: string, signal?: AbortSignal): Promise<boolean> {
  try {
    return (await probe(file, signal, { decodeCheck: false })).kind === 'video';
  } catch (error) {
    const err = LoupeError.from(error);
    if (err.code === 'CANCELLED') throw err;
    return err.code === 'CORRUPT_MEDIA';
  }
}

export function extensionOf(file: string): string {
  return path.extname(file).slice(1).toLowerCase();
}

/** Find the batch's clips among `inputs` (files and folders). */
export async function discoverInputs(
  inputs: readonly string[],
  options: DiscoverOptions = {},
): Promise<Discovery> {
  if (!inputs.length) throw new LoupeError('USAGE', 'Name at least one folder or video file.');
  const { recursive = false, recognise = recogniseWithProbe, signal } = options;
  const exclude = new Set((options.exclude ?? []).map((p) => path.resolve(p)));
  const found = new Map<string, string>(); // absolute path → absolute path (dedup, keeps first)
  const ignored: string[] = [];
  const anchors: string[] = [];
  const visited = new Set<string>();

  const walk = async (dir: string): Promise<void> => {
    throwIfAborted(signal);
    const real = await realpath(dir).catch(() => dir);
    if (visited.has(real)) return; // a symlink loop, or the same folder twice
    visited.add(real);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      throw new LoupeError('FILE_NOT_FOUND', `Cannot read the folder ${dir}: ${(error as Error).message}`, {
        path: dir,
      });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      if (exclude.has(full)) continue;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(full).catch(() => null);
        isDir = !!target?.isDirectory();
        isFile = !!target?.isFile();
      }
      if (isDir) {
        if (recursive) await walk(full);
      } else if (isFile) {
        const ext = extensionOf(entry.name);
        if (VIDEO_EXTENSIONS.has(ext) || (!NON_VIDEO_EXTENSIONS.has(ext) && (await recognise(full, signal))))
          found.set(full, full);
        else ignored.push(full);
      }
    }
  };

  for (const input of inputs) {
    const full = path.resolve(input);
    const info = await stat(full).catch(() => null);
    if (info?.isDirectory()) {
      anchors.push(full);
      await walk(full);
    } else {
      // A named file is always in: a missing or unreadable one is reported as a failed clip.
      anchors.push(path.dirname(full));
      if (!exclude.has(full)) found.set(full, full);
    }
  }

  const root = commonAncestor(anchors);
  const items = [...found.keys()]
    .map((file) => ({ path: file, relPath: normalizeRelPath(path.relative(root, file)) }))
    .sort((a, b) => (a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0));
  return { root, items, ignored };
}

/** The deepest folder containing every one of `dirs` (absolute paths). */
export function commonAncestor(dirs: readonly string[]): string {
  if (!dirs.length) return process.cwd();
  let parts = dirs[0]!.split(path.sep);
  for (const dir of dirs.slice(1)) {
    const other = dir.split(path.sep);
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(path.sep) || path.sep;
}
