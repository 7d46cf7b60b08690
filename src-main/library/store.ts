/**
 * The library on disk: one versioned JSON file (`library.json` in the user-data folder) holding videos,
 * settings and the per-video conversation history. Reads migrate old versions; writes are atomic
 * (temp file + rename) and serialized, so a crash never leaves a half-written library.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomic } from '../atomic.ts';
import { LoupeError } from '../errors.ts';
import { emptyLibrary, migrate, type LibraryData } from './migrations.ts';

export const LIBRARY_FILE = 'library.json';

export class LibraryStore {
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly file: string,
    private current: LibraryData,
    /** Set when the file on disk was unreadable or invalid and was moved aside (the app starts empty). */
    readonly recovered: { file: string; reason: string } | null,
  ) {}

  /** Where a damaged library file was moved to, if it was. */
  get recoveredFrom(): string | null {
    return this.recovered?.file ?? null;
  }

  /** What the user should be told about opening the library (shown in the app, printed by the CLI). */
  get notices(): string[] {
    return this.recovered
      ? [
          `Your library file could not be read (${this.recovered.reason}), so Loupe started with an empty library. ` +
            `The old file was kept as ${this.recovered.file}.`,
        ]
      : [];
  }

  /** Open (or create) the library in `dir`; an older format is migrated and saved at once. */
  static async open(dir: string): Promise<LibraryStore> {
    const file = path.join(dir, LIBRARY_FILE);
    let text: string | null = null;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text === null) return new LibraryStore(file, emptyLibrary(), null);
    // A file that does not parse, or parses but fails validation, is kept for the user (or a bug report) and
    // Loupe starts afresh rather than refuse to start; `recovered` says where it went and why. A file from a
    // newer Loupe is the exception: it is never touched, and opening throws.
    const setAside = async (reason: string) => {
      const aside = `${file}.damaged-${Date.now()}`;
      await rename(file, aside);
      return new LibraryStore(file, emptyLibrary(), { file: aside, reason });
    };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return setAside('it is not valid JSON');
    }
    let migrated: ReturnType<typeof migrate>;
    try {
      migrated = migrate(json);
    } catch (error) {
      if (error instanceof LoupeError && error.details.damaged) return setAside(error.message);
      throw error;
    }
    const { data, migratedFrom } = migrated;
    const store = new LibraryStore(file, data, null);
    if (migratedFrom !== null) {
      await writeFile(`${file}.v${migratedFrom}.bak`, text); // the pre-migration file, in case of regret
      await store.update(() => {});
    }
    return store;
  }

  /** A snapshot of the library; change it only through `update`. */
  get data(): Readonly<LibraryData> {
    return this.current;
  }

  /** Apply `change` to a copy, write it atomically, then make it current. Calls run one after another. */
  update<T>(change: (draft: LibraryData) => T): Promise<T> {
    const run = this.queue.then(async () => {
      const draft = structuredClone(this.current);
      const result = change(draft);
      await writeAtomic(this.file, JSON.stringify(draft, null, 1));
      this.current = draft;
      return result;
    });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}
