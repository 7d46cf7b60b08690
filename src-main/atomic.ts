/**
 * Atomic file writes, one way everywhere (write-file-atomic): a temporary file in the same folder, written and
 * fsync'd, then renamed over the target, so a crash or a full disk never leaves a half-written file behind and
 * the old contents stay until the new ones are whole. Any layer may import it.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';

/** Write `data` to `file` atomically (creating its folder), fsync'd before the rename. */
export async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, data, { fsync: true });
}
