/**
 * The app's log: one JSON line per event (pino) in `<data>/logs/loupe.log`, so a user can send it with a bug
 * report. Nothing is logged until `openLog` names the folder (tests and the CLI that never call it log nothing);
 * the previous file is kept as `loupe.log.1` once it passes LOG_MAX_BYTES, so the folder stays small.
 * Any layer may import this module (like `errors.ts`); it never throws.
 */
import { renameSync, statSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { LoupeError } from './errors.ts';

export const LOG_FILE = path.join('logs', 'loupe.log');
const LOG_MAX_BYTES = 5 * 1024 * 1024;

let current: Logger = pino({ enabled: false });
let currentFile: string | null = null;

/** Log to `<dataDir>/logs/loupe.log` from now on; returns the file's path. */
export function openLog(dataDir: string): string {
  const file = path.join(dataDir, LOG_FILE);
  if (file === currentFile) return file;
  try {
    if (statSync(file).size > LOG_MAX_BYTES) renameSync(file, `${file}.1`);
  } catch {
    // no log yet
  }
  const destination = pino.destination({ dest: file, mkdir: true, sync: false });
  flushLog();
  current = pino({ base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  currentFile = file;
  return file;
}

/** The file being logged to (null before `openLog`). */
export function logFile(): string | null {
  return currentFile;
}

/** Write what is buffered (before exit). */
export function flushLog(): void {
  try {
    current.flush?.();
  } catch {
    // the file is not open yet: what is buffered is written once it is
  }
}

type Fields = Record<string, unknown>;

/** An error as log fields: code, message, details, stack. */
export function errorFields(error: unknown): Fields {
  const err = LoupeError.from(error);
  const stack = error instanceof Error ? error.stack : err.stack;
  return { code: err.code, err: { message: err.message, details: err.details, stack } };
}

export const log = {
  info: (message: string, fields: Fields = {}) => current.info(fields, message),
  warn: (message: string, fields: Fields = {}) => current.warn(fields, message),
  error: (message: string, error?: unknown, fields: Fields = {}) =>
    current.error({ ...fields, ...(error === undefined ? {} : errorFields(error)) }, message),
};
