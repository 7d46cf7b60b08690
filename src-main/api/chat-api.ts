/**
 * Chat about one image or video, as other tools ask: each request carries its whole conversation (the
 * OpenAI-compatible routes in openai.ts map to this). The same path to the engine as the app's own
 * conversations: ClipConversation on the current model, under a model lease and the interactive gate.
 *
 * - Media come from a file the user let Loupe read (a library video, or a file under an allowed folder; the
 *   real path is checked, so a symlink cannot lead out) or from a data URL, written once to the cache
 *   (by content hash). Anything else is FORBIDDEN and nothing is read.
 * - A request that continues an earlier one (same media, clip and frames; its earlier turns the ones that
 *   request asked and was answered) reuses that conversation's KV cache: only the new question is prefilled.
 *   A few conversations are kept for that (least recently used first out), each closed when it goes.
 */
import { createHash } from 'node:crypto';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomic } from '../atomic.ts';
import { LoupeError } from '../errors.ts';
import type { AnswerEvent } from '../model/engine.ts';
import type { ChatMessage } from '../model/prompt.ts';
import { ClipConversation } from '../qa/ask.ts';
import type { Services } from '../services.ts';
import type { ChatEvent, ChatPart, ParsedStreamInput } from './contract.ts';

/** Conversations kept for follow-up requests. */
const CHATS_KEPT = 4;

export interface ChatAccess {
  /** Paths of the library's videos (readable by any client that holds the token). */
  libraryPaths(): readonly string[];
  /** Folders the user allowed (`loupe serve --allow DIR`); every file under them is readable. */
  allowedFolders: readonly string[];
}

type MediaPart = Extract<ChatPart, { type: 'image' | 'video' }>;

interface Kept {
  key: string;
  engineId: object;
  session: ClipConversation;
  /** The turns this conversation has answered: [question, answer] in order. */
  turns: [string, string][];
}

/** A request split into what the model needs: the media, the turns before, and the new question. */
interface Parsed {
  media: MediaPart;
  earlier: [string, string][];
  question: string;
}

const textOf = (parts: readonly ChatPart[]) =>
  parts
    .filter((p): p is Extract<ChatPart, { type: 'text' }> => p.type === 'text')
    .map((p) => p.text)
    .join('\n')
    .trim();

/** One image or video (in the first user message that has one), alternating turns, a user question last. */
export function parseChat(messages: ParsedStreamInput<'chat'>['messages']): Parsed {
  const turns = messages.filter((m) => m.role !== 'system'); // the built-in template has no system prompt
  const media = turns.flatMap((m) => m.parts.filter((p): p is MediaPart => p.type !== 'text'));
  if (media.length === 0)
    throw new LoupeError(
      'BAD_REQUEST',
      'Loupe answers about an image or a video: add one as an image_url or video_url content part.',
    );
  if (media.length > 1)
    throw new LoupeError(
      'BAD_REQUEST',
      `One image or video per conversation (this one has ${media.length}); ask about each in its own conversation.`,
    );
  const last = turns.at(-1);
  if (!last || last.role !== 'user')
    throw new LoupeError('BAD_REQUEST', 'The last message must be the user’s question.');
  const earlier: [string, string][] = [];
  for (let i = 0; i + 1 < turns.length; i += 2) {
    const [q, a] = [turns[i]!, turns[i + 1]!];
    if (q.role !== 'user' || a.role !== 'assistant')
      throw new LoupeError('BAD_REQUEST', 'Messages must alternate: user, assistant, user, …, user.');
    earlier.push([textOf(q.parts), textOf(a.parts)]);
  }
  if (turns.length % 2 === 0)
    throw new LoupeError('BAD_REQUEST', 'Messages must alternate: user, assistant, user, …, user.');
  const question = textOf(last.parts);
  if (!question) throw new LoupeError('BAD_REQUEST', 'The question is empty: add a text part.');
  if (earlier.some(([q]) => !q)) throw new LoupeError('BAD_REQUEST', 'An earlier user message has no text.');
  return { media: media[0]!, earlier, question };
}

/** Whether `file` lies inside `folder` (both real paths). */
const inside = (file: string, folder: string) => {
  const rel = path.relative(folder, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
};

const DATA_URL = /^data:((?:image|video)\/[a-z0-9.+-]+)(?:;[a-z0-9-]+=[^;,]*)*;base64,([a-z0-9+/=\s]*)$/i;
const EXTENSIONS: Record<string, string> = {
  'image/png': '.png',
  'image/jpeg': '.jpg',
  'image/webp': '.webp',
  'image/gif': '.gif',
  'image/bmp': '.bmp',
  'video/mp4': '.mp4',
  'video/webm': '.webm',
  'video/quicktime': '.mov',
  'video/x-matroska': '.mkv',
};

export class ChatApi {
  private kept: Kept[] = [];

  constructor(
    private readonly services: Services,
    private readonly access: ChatAccess,
  ) {}

  /** The file a media part names, after the access check (data URLs are written to the cache first). */
  async resolveMedia(part: MediaPart): Promise<{ file: string; identity: string }> {
    if ('dataUrl' in part.source) return this.fromDataUrl(part.source.dataUrl);
    const given = part.source.path;
    if (!path.isAbsolute(given))
      throw new LoupeError('BAD_REQUEST', `A file:// URL needs an absolute path (got "${given}").`);
    const refuse = () =>
      new LoupeError(
        'FORBIDDEN',
        `${given} is neither in Loupe's library nor under a folder you allowed (loupe serve --allow DIR): Loupe did not read it.`,
        { path: given },
      );
    const library = this.access.libraryPaths().map((p) => path.resolve(p));
    const allowed = this.access.allowedFolders.map((p) => path.resolve(p));
    // decide on the path as given before touching the file: outside everything, nothing is even stat'ed
    const named = path.resolve(given);
    if (!library.includes(named) && !allowed.some((f) => inside(named, f))) throw refuse();
    const real = await realpath(named).catch(() => {
      throw new LoupeError('FILE_NOT_FOUND', `There is no file at ${given}.`, { path: given });
    });
    // and again on the real path: a symlink under an allowed folder may point anywhere
    const realLibrary = await Promise.all(library.map((p) => realpath(p).catch(() => p)));
    const realAllowed = await Promise.all(allowed.map((p) => realpath(p).catch(() => p)));
    if (!realLibrary.includes(real) && !realAllowed.some((f) => inside(real, f))) throw refuse();
    const info = await stat(real);
    if (!info.isFile()) throw new LoupeError('NOT_A_VIDEO', `${given} is not a file.`, { path: given });
    return { file: real, identity: `${real}\0${info.size}\0${info.mtimeMs}` };
  }

  private async fromDataUrl(url: string): Promise<{ file: string; identity: string }> {
    const match = DATA_URL.exec(url);
    if (!match)
      throw new LoupeError(
        'BAD_REQUEST',
        'A data URL must be data:image/…;base64,… or data:video/…;base64,… (other encodings are not taken).',
      );
    const mime = match[1]!.toLowerCase();
    const bytes = Buffer.from(match[2]!, 'base64');
    if (bytes.length === 0) throw new LoupeError('BAD_REQUEST', 'The data URL holds no data.');
    const hash = createHash('sha256').update(bytes).digest('hex');
    const dir = path.join(this.services.dataDir, 'cache', 'uploads');
    const file = path.join(
      dir,
      `${hash}${EXTENSIONS[mime] ?? (mime.startsWith('image/') ? '.img' : '.video')}`,
    );
    if (!(await stat(file).catch(() => null))) await writeAtomic(file, bytes);
    return { file, identity: `data:${hash}` };
  }

  /** Take the kept conversation `key` if its turns are exactly `earlier`; it leaves the list while it answers. */
  private take(key: string, engineId: object, earlier: [string, string][]): Kept | null {
    const at = this.kept.findIndex(
      (k) => k.key === key && k.engineId === engineId && JSON.stringify(k.turns) === JSON.stringify(earlier),
    );
    if (at < 0) return null;
    return this.kept.splice(at, 1)[0]!;
  }

  private keep(entry: Kept): void {
    this.kept.push(entry);
    while (this.kept.length > CHATS_KEPT) this.kept.shift()!.session.close();
  }

  /** Close every kept conversation (a model switch, Clear history, quit). */
  closeAll(): void {
    for (const k of this.kept.splice(0)) k.session.close();
  }

  async *chat(input: ParsedStreamInput<'chat'>, signal: AbortSignal): AsyncGenerator<ChatEvent> {
    const { media, earlier, question } = parseChat(input.messages);
    const { file, identity } = await this.resolveMedia(media);
    const lease = await this.services.lease();
    let entry: Kept | null = null;
    let reusable = false;
    try {
      const { engine, extractor } = lease;
      const modelName = engine.manifest.name;
      if (
        input.model &&
        input.model !== modelName &&
        input.model !== `${modelName}@${engine.manifest.version}`
      )
        throw new LoupeError(
          'MODEL_NOT_FOUND',
          `The model "${input.model}" is not the one Loupe runs now ("${modelName}"); choose it in Settings, or ask "${modelName}".`,
          { model: input.model, available: [modelName] },
        );
      const clip =
        media.type === 'video'
          ? { from: media.from, to: media.to, frames: media.frames, mode: media.sampling }
          : {};
      const key = JSON.stringify([identity, media.type, clip]);
      entry = this.take(key, engine, earlier);
      if (!entry) {
        const history: ChatMessage[] = earlier.flatMap(([q, a], i) => [
          i === 0 ? engine.prompt.firstUserMessage(q) : { role: 'user' as const, content: q },
          { role: 'assistant' as const, content: a },
        ]);
        const session = await this.services.gate.runInteractive(() =>
          ClipConversation.open(engine, extractor, { path: file, ...clip, signal }, history),
        );
        entry = { key, engineId: engine, session, turns: [...earlier] };
      }
      const cachedBefore = entry.session.cachedTokens;
      const stops = input.stop;
      let text = '';
      let sent = 0;
      let generated = 0;
      let done: Extract<AnswerEvent, { type: 'done' }> | null = null;
      let stoppedAt = -1;
      const release = this.services.gate.interactive();
      try {
        for await (const event of entry.session.ask(question, {
          maxNewTokens: input.maxTokens ?? engine.manifest.defaults.maxNewTokens,
          temperature: input.temperature ?? 0,
          topP: input.topP ?? 0.9,
          seed: input.seed,
          signal,
        })) {
          if (event.type === 'done') {
            done = event;
            break;
          }
          generated++;
          const before = text.length;
          text += event.text;
          // a stop sequence ends the answer before it (OpenAI's rule); a tail that may still grow into one waits
          if (stops.length) stoppedAt = firstStop(text, stops, before);
          const upTo = stoppedAt >= 0 ? stoppedAt : stops.length ? safePrefix(text, stops) : text.length;
          if (upTo > sent) {
            yield { type: 'token', text: text.slice(sent, upTo) };
            sent = upTo;
          }
          if (stoppedAt >= 0) break; // leaving the ask stops the model's turn
        }
      } finally {
        release.release();
      }
      if (signal.aborted) throw new LoupeError('CANCELLED', 'Cancelled.');
      const answer = stoppedAt >= 0 ? text.slice(0, stoppedAt) : text;
      if (sent < answer.length) yield { type: 'token', text: answer.slice(sent) };
      // a cut answer has no timings: what the cache holds now, less what was generated, was the prompt
      const promptTokens = done
        ? cachedBefore + done.timings.prefillTokens
        : Math.max(cachedBefore, entry.session.cachedTokens - generated);
      // a whole answer continues the conversation as the client will send it back; a cut one does not
      reusable = stoppedAt < 0 && done !== null && done.text.trim() === answer.trim();
      const finalText = answer.trim();
      if (reusable) entry.turns.push([question, answer.trim()]);
      yield {
        type: 'done',
        text: finalText,
        finishReason: stoppedAt >= 0 || done?.stopped !== 'length' ? 'stop' : 'length',
        model: modelName,
        usage: { promptTokens, cachedTokens: cachedBefore, completionTokens: done?.tokens ?? generated },
      };
    } finally {
      if (entry) {
        if (reusable) this.keep(entry);
        else entry.session.close();
      }
      lease.release();
    }
  }
}

/** Where the first stop sequence starts in `text` (searching from a little before `from`), or -1. */
function firstStop(text: string, stops: readonly string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const at = text.indexOf(s, Math.max(0, from - s.length));
    if (at >= 0 && (best < 0 || at < best)) best = at;
  }
  return best;
}

/** How much of `text` can be sent: all but a tail that may still grow into a stop sequence. */
function safePrefix(text: string, stops: readonly string[]): number {
  let keep = 0;
  for (const s of stops)
    for (let n = Math.min(s.length - 1, text.length); n > 0; n--)
      if (text.endsWith(s.slice(0, n))) {
        keep = Math.max(keep, n);
        break;
      }
  return text.length - keep;
}
