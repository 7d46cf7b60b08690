/**
 * The conversations half of the API: open a conversation on a clip, ask (streaming the answer), stop, history.
 * One map from id to the live ClipConversation (which keeps the model's KV cache for follow-ups) and the
 * AbortController of its running answer, so Stop can end it. At most LIVE_CONVERSATIONS stay live.
 */
import { randomUUID } from 'node:crypto';
import { LoupeError } from '../errors.ts';
import type { LibraryStore } from '../library/store.ts';
import type { AnswerEvent, GenerateOptions } from '../model/engine.ts';
import { ClipConversation, earlierMessages, type EarlierTurn } from '../qa/ask.ts';
import type { ClipRequest } from '../qa/clip-features.ts';
import type { Services } from '../services.ts';
import type {
  AskEvent,
  CallOutput,
  ConversationRecord,
  FirstWord,
  ParsedCallInput,
  ParsedStreamInput,
  Timings,
  Turn,
} from './contract.ts';
import { thumbsAt, type LibraryApi } from './library-api.ts';

/** What the service needs of an open clip conversation (qa/ask.ts's ClipConversation has it). */
export interface ClipSession {
  readonly clip: {
    range: { from: number; to: number };
    frames: { timeSec: number }[];
    /** How long sampling (probe, decode) and the vision encoder took (qa/clip-features.ts). */
    timings?: { probeMs: number; decodeMs: number; encodeMs: number };
  };
  ask(question: string, options: GenerateOptions): AsyncIterable<AnswerEvent>;
  /** Free the model's cache (during an answer: when it ends). */
  close(): void;
}

/** Open a clip conversation; `earlier` turns (a reopened conversation) are prefilled with its next question. */
export type OpenClip = (
  services: Services,
  request: ClipRequest,
  earlier?: readonly EarlierTurn[],
) => Promise<ClipSession>;

const LIVE_CONVERSATIONS = 8;

interface Live {
  id: string;
  videoId: string;
  session: ClipSession;
  record: ConversationRecord;
  controller: AbortController | null;
  /** What opened it, so that a conversation released before its first question can be opened again. */
  request: ClipRequest;
  /** When it was last opened or asked (a counter): the least recently used idle conversation is released first. */
  lastUsed: number;
  /** The opening's time, reported with the next answer's first word (then cleared). */
  opening: Opening | null;
}

/** What opening a conversation took: `elapsedMs` before the question arrived (0 when reopened by the question). */
interface Opening {
  elapsedMs: number;
  samplingMs: number;
  visionMs: number;
}

function openingOf(session: ClipSession, elapsedMs: number): Opening {
  const t = session.clip.timings;
  return { elapsedMs, samplingMs: t ? t.probeMs + t.decodeMs : 0, visionMs: t ? t.encodeMs : 0 };
}

/** A conversation whose model cache was released to keep LIVE_CONVERSATIONS: enough to explain, or reopen it. */
type Released = Omit<Live, 'session' | 'controller' | 'opening'>;
/** How many released conversations are remembered (their ids and records only). */
const RELEASED_KEPT = 1000;

/** Opens under a model lease: a model switch waits for it, and a clip opened on a model switched away from is refused. */
export const defaultOpenClip: OpenClip = async (services, request, earlier = []) => {
  const lease = await services.lease();
  try {
    const history = earlierMessages(lease.engine, earlier);
    const session = await ClipConversation.open(lease.engine, lease.extractor, request, history);
    if (!services.isCurrent(lease.engine))
      throw new LoupeError('MODEL_RUNTIME', 'The model was switched while this clip opened: open it again.');
    return session;
  } finally {
    lease.release();
  }
};

/** The first word's breakdown (contract FirstWord): the opening's parts, the engine's, and the rest as waiting. */
function firstWord(opening: Opening | null, askedMs: number, timings: Timings): FirstWord {
  const totalMs = (opening?.elapsedMs ?? 0) + askedMs;
  const samplingMs = opening?.samplingMs ?? 0;
  const visionMs = opening?.visionMs ?? 0;
  const prefillMs = timings.prefillMs;
  const firstTokenMs = Math.max(0, timings.firstTokenMs - timings.prefillMs);
  const waitMs = Math.max(0, totalMs - samplingMs - visionMs - prefillMs - firstTokenMs);
  return { totalMs, samplingMs, visionMs, prefillMs, firstTokenMs, waitMs };
}

export class ConversationsApi {
  private readonly live = new Map<string, Live>();
  private readonly released = new Map<string, Released>();
  private readonly reopening = new Map<string, Promise<Live>>();
  private useCount = 0;

  constructor(
    private readonly services: Services,
    private readonly store: LibraryStore,
    private readonly library: LibraryApi,
    private readonly openClip: OpenClip = defaultOpenClip,
  ) {}

  async openConversation({
    videoId,
    from,
    to,
  }: ParsedCallInput<'openConversation'>): Promise<CallOutput<'openConversation'>> {
    const started = performance.now();
    const video = this.library.playableVideo(videoId);
    if (to < from) throw new LoupeError('USAGE', 'The clip ends before it starts.', { from, to });
    const { frames, sampling } = this.store.data.settings;
    const open = this.openClip;
    // Interactive work goes first: a running batch yields the model until the person is done.
    const request: ClipRequest = { path: video.path, from, to, frames: frames ?? undefined, mode: sampling };
    const session = await this.services.gate.runInteractive(() => open(this.services, request));
    const engine = await this.services.engine();
    const id = randomUUID();
    const times = session.clip.frames.map((f) => f.timeSec);
    const record: ConversationRecord = {
      id,
      videoId,
      range: session.clip.range,
      frameTimes: times,
      createdAt: new Date().toISOString(),
      model: `${engine.manifest.name}@${engine.manifest.version}`,
      turns: [],
    };
    const opening = openingOf(session, performance.now() - started);
    this.live.set(id, {
      id,
      videoId,
      session,
      record,
      controller: null,
      request,
      lastUsed: ++this.useCount,
      opening,
    });
    this.evictIdle(id);
    return { conversationId: id, range: record.range, frames: await thumbsAt(video.path, times) };
  }

  async *ask(
    { conversationId, question }: ParsedStreamInput<'ask'>,
    signal: AbortSignal,
  ): AsyncGenerator<AskEvent> {
    const asked = performance.now();
    const live = this.live.get(conversationId) ?? (await this.reopen(conversationId));
    live.lastUsed = ++this.useCount;
    if (live.controller)
      throw new LoupeError('USAGE', 'This conversation is still answering: wait, or press Stop.');
    const opening = live.opening;
    live.opening = null;
    let firstTokenAt: number | null = null;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    live.controller = controller;
    const { maxNewTokens, temperature } = this.store.data.settings;
    const turn: Turn = {
      question,
      answer: '',
      stopped: 'eos',
      askedAt: new Date().toISOString(),
      timings: null,
      error: null,
    };
    const lease = this.services.gate.interactive();
    // the model stays loaded until this answer ends (a model switch closes the conversation, then waits)
    const model = await this.services.lease().catch((error: unknown) => {
      lease.release();
      signal.removeEventListener('abort', onAbort);
      live.controller = null;
      throw error;
    });
    try {
      for await (const event of live.session.ask(question, {
        maxNewTokens,
        temperature,
        topP: 0.9,
        signal: controller.signal,
      })) {
        if (event.type === 'token') {
          firstTokenAt ??= performance.now();
          if (!event.text) continue; // the API streams text; ids without text show nothing
          turn.answer += event.text;
          yield { type: 'token', text: event.text };
        } else {
          Object.assign(turn, { answer: event.text, stopped: event.stopped, timings: event.timings });
          await this.saveTurn(live, turn);
          yield {
            type: 'done',
            text: event.text,
            tokens: event.tokens,
            stopped: event.stopped,
            timings: event.timings,
            firstWord: firstWord(opening, (firstTokenAt ?? performance.now()) - asked, event.timings),
          };
        }
      }
    } catch (error) {
      const err = LoupeError.from(error);
      if (err.code === 'CANCELLED') {
        Object.assign(turn, { answer: turn.answer.trim(), stopped: 'cancelled' });
        await this.saveTurn(live, turn);
        yield { type: 'cancelled', text: turn.answer };
        return;
      }
      Object.assign(turn, { stopped: 'error', error: err.toJSON() });
      await this.saveTurn(live, turn).catch(() => undefined);
      throw err;
    } finally {
      model.release();
      lease.release();
      signal.removeEventListener('abort', onAbort);
      live.controller = null;
    }
  }

  async stop({ conversationId }: ParsedCallInput<'stop'>): Promise<CallOutput<'stop'>> {
    this.live.get(conversationId)?.controller?.abort();
    return { ok: true };
  }

  async history({ videoId }: ParsedCallInput<'history'>): Promise<CallOutput<'history'>> {
    return {
      conversations: this.store.data.conversations.filter((c) => c.videoId === videoId && c.turns.length > 0),
    };
  }

  private async saveTurn(live: Live, turn: Turn): Promise<void> {
    live.record.turns.push({ ...turn });
    const record = structuredClone(live.record);
    await this.store.update((d) => {
      const at = d.conversations.findIndex((c) => c.id === record.id);
      if (at >= 0) d.conversations[at] = record;
      else if (d.videos.some((v) => v.id === record.videoId)) d.conversations.push(record);
    });
  }

  close(id: string): void {
    const live = this.live.get(id);
    live?.controller?.abort();
    live?.session.close(); // an answering one frees its cache when the stopped answer ends
    this.live.delete(id);
    this.released.delete(id);
  }

  /** Conversations whose model cache is held (at most LIVE_CONVERSATIONS). */
  get liveCount(): number {
    return this.live.size;
  }

  /**
   * Keep at most LIVE_CONVERSATIONS model caches alive: idle ones go, least recently used first; the one just
   * opened (`keep`) and those answering never do. A released one is remembered, to be reopened or explained.
   */
  private evictIdle(keep: string): void {
    const idle = [...this.live.values()]
      .filter((l) => !l.controller && l.id !== keep)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const { id, videoId, record, request, lastUsed, session } of idle) {
      if (this.live.size <= LIVE_CONVERSATIONS) break;
      session.close(); // the model's cache goes now, not when garbage collection happens to run
      this.live.delete(id);
      this.released.set(id, { id, videoId, record, request, lastUsed });
      if (this.released.size > RELEASED_KEPT) this.released.delete(this.released.keys().next().value!);
    }
  }

  /**
   * A conversation asked after its cache was released (to keep LIVE_CONVERSATIONS, or by a restart): opened again
   * on the same clip, its stored turns prefilled with the new question (the caller does not notice, but for the
   * time it takes). Only an id Loupe does not know (a cleared history, a removed video) is refused.
   */
  private reopen(conversationId: string): Promise<Live> {
    let pending = this.reopening.get(conversationId);
    if (pending) return pending;
    const released = this.released.get(conversationId) ?? this.storedConversation(conversationId);
    if (!released)
      throw new LoupeError(
        'NOT_FOUND',
        'This conversation is closed (its history was cleared, or its video removed). Ask again to start a new one.',
        { conversationId, reason: 'closed' },
      );
    this.released.set(conversationId, released);
    const open = this.openClip;
    const earlier = released.record.turns.filter(
      (t) => t.stopped !== 'error' && (t.answer !== '' || t.stopped !== 'cancelled'),
    );
    pending = this.services.gate
      .runInteractive(() => open(this.services, released.request, earlier))
      .then((session) => {
        const live: Live = {
          ...released,
          session,
          controller: null,
          lastUsed: ++this.useCount,
          opening: openingOf(session, 0),
        };
        if (!this.released.delete(conversationId)) {
          session.close();
          throw new LoupeError('NOT_FOUND', 'This conversation was closed meanwhile.', { conversationId });
        }
        this.live.set(conversationId, live);
        this.evictIdle(conversationId);
        return live;
      })
      .finally(() => this.reopening.delete(conversationId));
    this.reopening.set(conversationId, pending);
    return pending;
  }

  /** A conversation of an earlier run, from the library: how to open its clip again. */
  private storedConversation(conversationId: string): Released | null {
    const record = this.store.data.conversations.find((c) => c.id === conversationId);
    const video = record && this.store.data.videos.find((v) => v.id === record.videoId && !v.error);
    if (!record || !video) return null;
    const request: ClipRequest = {
      path: video.path,
      from: record.range.from,
      to: record.range.to,
      frames: record.frameTimes.length || undefined,
      mode: this.store.data.settings.sampling,
    };
    return { id: record.id, videoId: record.videoId, record: structuredClone(record), request, lastUsed: 0 };
  }

  /** Close every conversation (model switch, cleared history, quit). */
  closeAll(): void {
    for (const id of [...this.live.keys(), ...this.released.keys()]) this.close(id);
  }

  /** Close the conversations about one video (it is being removed). */
  closeVideo(videoId: string): void {
    for (const c of [...this.live.values(), ...this.released.values()])
      if (c.videoId === videoId) this.close(c.id);
  }
}
