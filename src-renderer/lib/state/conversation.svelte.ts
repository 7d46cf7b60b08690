/**
 * Questions about the selected clip (or the whole video). A conversation is tied to one clip range: asking
 * with a different selection opens a new one (and says so); follow-ups on the same range reuse it. Each video
 * keeps its current conversation while another is shown, and an earlier one can be continued (main reopens it
 * from its stored turns when its model cache is gone).
 */
import type { ConversationRecord, FirstWord, FrameRef, Timings } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import type { Range } from '../timeline-math.ts';

export interface TurnView {
  question: string;
  answer: string;
  status: 'opening' | 'answering' | 'eos' | 'length' | 'cancelled' | 'error';
  timings: Timings | null;
  error: string | null;
  /** Where main's time before the first word went (answers given in this window only). */
  firstWord: FirstWord | null;
  /** Milliseconds from Ask to the first word arriving here (answers given in this window only). */
  askToFirstMs: number | null;
}

/** A stored turn as the conversation view shows it. */
export function storedTurn(t: ConversationRecord['turns'][number]): TurnView {
  return {
    question: t.question,
    answer: t.answer,
    status: t.stopped,
    timings: t.timings,
    error: t.error?.message ?? null,
    firstWord: null,
    askToFirstMs: null,
  };
}

export interface LiveConversation {
  id: string;
  range: Range;
  frames: FrameRef[];
  turns: TurnView[];
}

/** Ranges closer than this (seconds) count as the same clip. */
const SAME_RANGE_SEC = 0.05;

export function sameRange(a: Range, b: Range): boolean {
  return Math.abs(a.from - b.from) < SAME_RANGE_SEC && Math.abs(a.to - b.to) < SAME_RANGE_SEC;
}

export class ConversationState {
  videoId = $state<string | null>(null);
  history = $state.raw<ConversationRecord[]>([]);
  current = $state<LiveConversation | null>(null);
  /** The conversation a user ended or that history shows, kept while a new one opens. */
  question = $state('');
  busy = $state<null | 'opening' | 'answering'>(null);
  error = $state<string | null>(null);
  /** Frame thumbnails of history conversations, by conversation id (loaded on demand). */
  historyFrames = $state<Record<string, FrameRef[]>>({});
  private controller: AbortController | null = null;
  /** Each video's current conversation, kept while another video is shown (read on load only: not reactive). */
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private readonly kept = new Map<string, LiveConversation>();

  constructor(private readonly api: ApiClient) {}

  /** Drop the kept conversations (they belonged to the model before a switch). */
  forgetKept(): void {
    this.kept.clear();
  }

  /**
   * Show a video's conversations: its history, and the conversation that was current when it was last shown
   * (still answerable: main reopens it if its model cache was released).
   */
  async load(videoId: string | null): Promise<void> {
    this.controller?.abort();
    if (this.videoId && this.current?.turns.length) this.kept.set(this.videoId, this.current);
    this.videoId = videoId;
    this.current = null;
    this.error = null;
    this.busy = null;
    this.history = [];
    this.historyFrames = {};
    if (!videoId) return;
    try {
      const { conversations } = await this.api.call('history', { videoId });
      if (this.videoId !== videoId) return; // another video was opened meanwhile
      this.history = conversations;
      const kept = this.kept.get(videoId);
      // An answer stopped by leaving the video shows as stopped; one whose record is gone (cleared) is not kept.
      if (kept && conversations.some((c) => c.id === kept.id)) {
        for (const t of kept.turns)
          if (t.status === 'answering' || t.status === 'opening') t.status = 'cancelled';
        this.current = kept;
      } else this.kept.delete(videoId);
    } catch (error) {
      if (this.videoId === videoId) this.error = ApiError.from(error).message;
    }
  }

  /** Make an earlier conversation the current one: the next question continues it. */
  async continueFrom(record: ConversationRecord): Promise<void> {
    if (this.busy || record.videoId !== this.videoId) return;
    this.error = null;
    const frames =
      this.historyFrames[record.id] ?? record.frameTimes.map((timeSec) => ({ timeSec, thumb: '' }));
    this.current = { id: record.id, range: record.range, frames, turns: record.turns.map(storedTurn) };
    if (!this.historyFrames[record.id]) {
      await this.loadHistoryFrames(record);
      const loaded = this.historyFrames[record.id];
      if (loaded && this.current?.id === record.id) this.current.frames = loaded;
    }
  }

  /** True when asking about `scope` would start a new conversation although one is open. */
  startsNew(scope: Range): boolean {
    return this.current !== null && !sameRange(this.current.range, scope);
  }

  async ask(scope: Range, questionText = this.question): Promise<void> {
    const question = questionText.trim();
    if (!this.videoId || !question || this.busy) return;
    this.error = null;
    this.question = '';
    const videoId = this.videoId;
    const asked = performance.now();
    try {
      if (!this.current || !sameRange(this.current.range, scope)) {
        this.busy = 'opening';
        const opened = await this.api.call('openConversation', { videoId, from: scope.from, to: scope.to });
        if (this.videoId !== videoId) return;
        this.current = { id: opened.conversationId, range: opened.range, frames: opened.frames, turns: [] };
      }
      await this.answer(this.current!, question, asked);
    } catch (error) {
      const e = ApiError.from(error);
      if (e.code === 'NOT_FOUND' && this.current) {
        // The conversation closed on the other side (restart, cleared history): start afresh on the same clip.
        this.current = null;
        this.busy = null;
        this.kept.delete(videoId);
        return this.ask(scope, question);
      }
      this.error = e.message;
      this.question = question; // give the question back so it can be asked again
    } finally {
      this.busy = null;
      this.controller = null;
    }
  }

  private async answer(conversation: LiveConversation, question: string, asked: number): Promise<void> {
    conversation.turns.push({
      question,
      answer: '',
      status: 'answering',
      timings: null,
      error: null,
      firstWord: null,
      askToFirstMs: null,
    });
    const turn = conversation.turns[conversation.turns.length - 1]!;
    this.busy = 'answering';
    this.controller = new AbortController();
    try {
      for await (const event of this.api.stream(
        'ask',
        { conversationId: conversation.id, question },
        this.controller.signal,
      )) {
        if (event.type === 'token') {
          turn.askToFirstMs ??= performance.now() - asked;
          turn.answer += event.text;
        } else if (event.type === 'done')
          Object.assign(turn, {
            answer: event.text,
            status: event.stopped,
            timings: event.timings,
            firstWord: event.firstWord ?? null,
          });
        else Object.assign(turn, { answer: event.text, status: 'cancelled' });
      }
    } catch (error) {
      const e = ApiError.from(error);
      if (e.code === 'CANCELLED') turn.status = 'cancelled';
      else if (e.code === 'NOT_FOUND') {
        conversation.turns.pop();
        throw e;
      } else Object.assign(turn, { status: 'error', error: e.message });
    }
    this.busy = null; // the answer has ended: the next question may go while the history refreshes
    const videoId = this.videoId;
    if (!videoId) return;
    const { conversations } = await this.api.call('history', { videoId });
    if (this.videoId === videoId) this.history = conversations;
  }

  /** Stop the answer being written; what was written so far is kept. */
  async stop(): Promise<void> {
    if (!this.current) return;
    await this.api.call('stop', { conversationId: this.current.id }).catch(() => undefined);
  }

  async loadHistoryFrames(record: ConversationRecord): Promise<void> {
    if (this.historyFrames[record.id] || !this.videoId) return;
    try {
      const { frames } = await this.api.call('frameThumbs', {
        videoId: this.videoId,
        times: record.frameTimes,
      });
      this.historyFrames[record.id] = frames;
    } catch {
      this.historyFrames[record.id] = record.frameTimes.map((timeSec) => ({ timeSec, thumb: '' }));
    }
  }
}
