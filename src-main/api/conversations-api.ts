/**
 * The conversations half of the API: open a conversation on a clip, ask (streaming the answer), stop, history.
 * One map from id to the live ClipConversation (which keeps the model's KV cache for follow-ups) and the
 * AbortController of its running answer, so Stop can end it. At most LIVE_CONVERSATIONS stay live.
 */
import { randomUUID } from 'node:crypto';
import { LoupeError } from '../errors.ts';
import type { LibraryStore } from '../library/store.ts';
import type { AnswerEvent, GenerateOptions } from '../model/engine.ts';
import { ClipConversation } from '../qa/ask.ts';
import type { ClipRequest } from '../qa/clip-features.ts';
import type { Services } from '../services.ts';
import type {
  AskEvent,
  CallOutput,
  ConversationRecord,
  ParsedCallInput,
  ParsedStreamInput,
  Turn,
} from './contract.ts';
import { thumbsAt, type LibraryApi } from './library-api.ts';

/** What the service needs of an open clip conversation (qa/ask.ts's ClipConversation has it). */
export interface ClipSession {
  readonly clip: { range: { from: number; to: number }; frames: { timeSec: number }[] };
  ask(question: string, options: GenerateOptions): AsyncIterable<AnswerEvent>;
  /** Free the model's cache (during an answer: when it ends). */
  close(): void;
}

export type OpenClip = (services: Services, request: ClipRequest) => Promise<ClipSession>;

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
}

/** A conversation whose model cache was released to keep LIVE_CONVERSATIONS: enough to explain, or reopen it. */
type Released = Omit<Live, 'session' | 'controller'>;
/** How many released conversations are remembered (their ids and records only). */
const RELEASED_KEPT = 1000;

/** Opens under a model lease: a model switch waits for it, and a clip opened on a model switched away from is refused. */
export const defaultOpenClip: OpenClip = async (services, request) => {
  const lease = await services.lease();
  try {
    const session = await ClipConversation.open(lease.engine, lease.extractor, request);
    if (!services.isCurrent(lease.engine))
      throw new LoupeError('MODEL_RUNTIME', 'The model was switched while this clip opened: open it again.');
    return session;
  } finally {
    lease.release();
  }
};

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
    this.live.set(id, { id, videoId, session, record, controller: null, request, lastUsed: ++this.useCount });
    this.evictIdle(id);
    return { conversationId: id, range: record.range, frames: await thumbsAt(video.path, times) };
  }

  async *ask(
    { conversationId, question }: ParsedStreamInput<'ask'>,
    signal: AbortSignal,
  ): AsyncGenerator<AskEvent> {
    const live = this.live.get(conversationId) ?? (await this.reopen(conversationId));
    live.lastUsed = ++this.useCount;
    if (live.controller)
      throw new LoupeError('USAGE', 'This conversation is still answering: wait, or press Stop.');
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
   * A conversation asked after its cache was released: one that had no turns yet is opened again on the same
   * frames (the caller does not notice, but for the time it takes); one with turns cannot be, since its cache
   * held them, and the error says so. An id Loupe never knew (or forgot: a restart, a cleared history) says that.
   */
  private reopen(conversationId: string): Promise<Live> {
    const released = this.released.get(conversationId);
    if (!released)
      throw new LoupeError(
        'NOT_FOUND',
        'This conversation is closed (Loupe was restarted, or its history was cleared). Ask again to start a new one.',
        { conversationId, reason: 'closed' },
      );
    if (released.record.turns.length > 0)
      throw new LoupeError(
        'NOT_FOUND',
        `Loupe released this conversation's model memory to make room for newer ones (it keeps ${LIVE_CONVERSATIONS} at a time). ` +
          'Its questions and answers are saved in the history; select the clip again to ask more.',
        { conversationId, reason: 'evicted' },
      );
    let pending = this.reopening.get(conversationId);
    if (!pending) {
      const open = this.openClip;
      pending = this.services.gate
        .runInteractive(() => open(this.services, released.request))
        .then((session) => {
          const live: Live = { ...released, session, controller: null, lastUsed: ++this.useCount };
          if (!this.released.delete(conversationId))
            throw new LoupeError('NOT_FOUND', 'This conversation was closed meanwhile.', { conversationId });
          this.live.set(conversationId, live);
          this.evictIdle(conversationId);
          return live;
        })
        .finally(() => this.reopening.delete(conversationId));
      this.reopening.set(conversationId, pending);
    }
    return pending;
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
