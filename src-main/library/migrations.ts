/**
 * The library file's versions and one migration per step. A file is read, migrated step by step up to
 * CURRENT_VERSION, then validated; it is written back in the current format on the next change.
 *
 * v1 (the first vertical slice): `{ version: 1, videos: [{ id, path, name, size, duration, error? }],
 *      settings: { frames, maxTokens } }` — no history.
 * v2: video fields named by unit (sizeBytes, durationSec) plus size/kind/codec/addedAt; settings gain temperature
 *      and theme (maxTokens → maxNewTokens); `conversations` holds the per-video history.
 * v3: settings gain `modelPack` (the chosen model pack's folder; null = the built-in one).
 */
import { z } from 'zod';
import { ConversationRecordSchema, DEFAULT_SETTINGS, SettingsSchema, VideoSchema } from './records.ts';
import { LoupeError } from '../errors.ts';

export const CURRENT_VERSION = 3;

export const LibraryDataSchema = z.object({
  version: z.literal(CURRENT_VERSION),
  videos: z.array(VideoSchema),
  settings: SettingsSchema,
  conversations: z.array(ConversationRecordSchema),
});
export type LibraryData = z.infer<typeof LibraryDataSchema>;

export function emptyLibrary(): LibraryData {
  return { version: CURRENT_VERSION, videos: [], settings: { ...DEFAULT_SETTINGS }, conversations: [] };
}

type Json = Record<string, unknown>;
const asRecord = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const num = (v: unknown, fallback: number) => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/** migrations[n] turns a version-n document into a version-(n+1) one. Each is pure and tested. */
export const migrations: Record<number, (doc: Json) => Json> = {
  1: (doc) => {
    const settings = asRecord(doc.settings);
    return {
      version: 2,
      videos: asArray(doc.videos).map((raw) => {
        const v = asRecord(raw);
        const error = asRecord(v.error);
        return {
          id: String(v.id),
          path: String(v.path),
          name: String(v.name ?? v.path),
          sizeBytes: Math.max(0, Math.round(num(v.size, 0))),
          durationSec: Math.max(0, num(v.duration, 0)),
          width: 0,
          height: 0,
          kind: 'video',
          codec: '',
          addedAt: new Date(0).toISOString(),
          error: v.error
            ? { code: String(error.code ?? 'CORRUPT_MEDIA'), message: String(error.message ?? v.error) }
            : null,
        };
      }),
      settings: {
        frames: typeof settings.frames === 'number' ? settings.frames : DEFAULT_SETTINGS.frames,
        maxNewTokens: num(settings.maxTokens, DEFAULT_SETTINGS.maxNewTokens),
        temperature: DEFAULT_SETTINGS.temperature,
        theme: DEFAULT_SETTINGS.theme,
      },
      conversations: [],
    };
  },
  2: (doc) => ({ ...doc, version: 3, settings: { ...asRecord(doc.settings), modelPack: null } }),
};

/** Bring any known version up to date. Throws for files from a newer Loupe (they are never overwritten). */
export function migrate(raw: unknown): { data: LibraryData; migratedFrom: number | null } {
  let doc = asRecord(raw);
  const start = typeof doc.version === 'number' ? doc.version : 1;
  if (start > CURRENT_VERSION)
    throw new LoupeError(
      'INTERNAL',
      `The library was saved by a newer version of Loupe (format ${start}; this one reads up to ${CURRENT_VERSION}). Update Loupe to open it.`,
      { version: start },
    );
  for (let v = start; v < CURRENT_VERSION; v++) {
    const step = migrations[v];
    if (!step) throw new LoupeError('INTERNAL', `No migration from library format ${v}.`, { version: v });
    doc = step(doc);
  }
  const parsed = LibraryDataSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LoupeError(
      'INTERNAL',
      `The library file is damaged: ${issue.path.join('.')}: ${issue.message}`,
      {
        damaged: true,
        issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
      },
    );
  }
  return { data: parsed.data, migratedFrom: start === CURRENT_VERSION ? null : start };
}
