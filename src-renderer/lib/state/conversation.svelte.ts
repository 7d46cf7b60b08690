/**
 * Questions about the selected clip (or the whole video). A conversation is tied to one clip range: asking
 * with a different selection opens a new one (and says so); follow-ups on the same range reuse it.
 */
import type { ConversationRecord, FrameRef, Timings } from '../../../src-main/api/contract.ts';
import { ApiError, type ApiClient } from '../api/client.ts';
import type { Range } from '../timeline-math.ts';

export interface TurnView {
  question: string;
  answer: string;
  status: 'opening' | 'answering' | 'eos' | 'length' | 'cancelled' | 'error';
  timings: Timings | null;
  error: string | null;
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

  constructor(private readonly api: ApiClient) {}

  async load(videoId: string | null): Promise<void> {
    this.controller?.abort();
    this.videoId = videoId;
    this.current = null;
    this.error = null;
    this.busy = null;
    this.history = [];
    this.historyFrames = {};
    if (!videoId) return;
    try {
      const { conversations } = await this.api.call('history', { videoId });
      if (this.videoId === videoId) this.history = conversations; // unless another video was opened meanwhile
    } catch (error) {
      if (this.videoId === videoId) this.error = ApiError.from(error).message;
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
    try {
      if (!this.current || !sameRange(this.current.range, scope)) {
        this.busy = 'opening';
        const opened = await this.api.call('openConversation', { videoId, from: scope.from, to: scope.to });
        if (this.videoId !== videoId) return;
        this.current = { id: opened.conversationId, range: opened.range, frames: opened.frames, turns: [] };
      }
      await this.answer(this.current!, question);
    } catch (error) {
      const e = ApiError.from(error);
      if (e.code === 'NOT_FOUND' && this.current) {
        // The conversation closed on the other side (restart, cleared history): start afresh on the same clip.
        this.current = null;
        this.busy = null;
        return this.ask(scope, question);
      }
      this.error = e.message;
      this.question = question; // give the question back so it can be asked again
    } finally {
      this.busy = null;
      this.controller = null;
    }
  }

  private async answer(conversation: LiveConversation, question: string): Promise<void> {
    conversation.turns.push({ question, answer: '', status: 'answering', timings: null, error: null });
    const turn = conversation.turns[conversation.turns.length - 1]!;
    this.busy = 'answering';
    this.controller = new AbortController();
    try {
      for await (const event of this.api.stream(
        'ask',
        { conversationId: conversation.id, question },
        this.controller.signal,
      )) {
        if (event.type === 'token') turn.answer += event.text;
        else if (event.type === 'done')
          Object.assign(turn, { answer: event.text, status: event.stopped, timings: event.timings });
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
