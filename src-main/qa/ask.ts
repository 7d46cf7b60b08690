/**
 * Questions about a clip: frames in, answer tokens out, as one async stream of events. A
 * ClipConversation keeps the engine's conversation (and its KV cache) for follow-up questions.
 */
import { LoupeError } from '../errors.ts';
import type { AnswerEvent, GenerateOptions, ModelConversation, ModelEngine } from '../model/engine.ts';
import type { ChatMessage } from '../model/prompt.ts';
import type { ClipFeatureExtractor, ClipFeatures, ClipRequest, UsedFrame } from './clip-features.ts';

export type AskEvent =
  | {
      type: 'frames';
      kind: 'image' | 'frames';
      frames: UsedFrame[];
      range: { from: number; to: number };
      durationSec: number;
      timings: ClipFeatures['timings'];
    }
  | AnswerEvent;

/** A question and its answer, as stored: what a reopened conversation prefills before its next question. */
export interface EarlierTurn {
  question: string;
  answer: string;
}

/** Earlier turns as the model's messages (the first question carries the visual input, as when it was asked). */
export function earlierMessages(
  engine: Pick<ModelEngine, 'prompt'>,
  turns: readonly EarlierTurn[],
): ChatMessage[] {
  return turns.flatMap((t, i) => [
    i === 0 ? engine.prompt.firstUserMessage(t.question) : { role: 'user' as const, content: t.question },
    { role: 'assistant' as const, content: t.answer },
  ]);
}

export class ClipConversation {
  private constructor(
    readonly clip: ClipFeatures,
    private readonly conversation: ModelConversation,
  ) {}

  /** `engine` may still be loading: the clip's frames are decoded meanwhile (see clip-features `whileLoading`). */
  static async open(
    engine: ModelEngine | Promise<ModelEngine>,
    extractor: ClipFeatureExtractor,
    req: ClipRequest,
    /** Earlier turns, as a stateless client sends them: prefilled with the first question asked here. */
    history: readonly ChatMessage[] = [],
  ): Promise<ClipConversation> {
    const [loaded, clip] = await Promise.all([engine, extractor.extract(req)]);
    engine = loaded;
    const needed = clip.visual.frames.length;
    const fits = engine.maxFrames();
    if (clip.visual.kind === 'frames' && needed > fits)
      throw new LoupeError(
        'CONTEXT_OVERFLOW',
        `${needed} frames do not fit the model's context of ${engine.manifest.decoder.contextLength} tokens: use at most ${fits}.`,
        { frames: needed, maxFrames: fits },
      );
    return new ClipConversation(clip, engine.startConversation(clip.visual, history));
  }

  get framesEvent(): AskEvent {
    return {
      type: 'frames',
      kind: this.clip.visual.kind,
      frames: this.clip.frames,
      range: this.clip.range,
      durationSec: this.clip.info.durationSec,
      timings: this.clip.timings,
    };
  }

  get cachedTokens(): number {
    return this.conversation.cachedTokens;
  }

  ask(question: string, options: GenerateOptions = {}): AsyncGenerator<AnswerEvent> {
    if (!question.trim()) throw new LoupeError('USAGE', 'The question is empty.');
    return this.conversation.ask(question.trim(), options);
  }

  /** Free the model's cache of this conversation (during an answer: when it ends). Idempotent. */
  close(): void {
    this.conversation.close();
  }
}

/** One-shot: open a conversation on the clip, announce the frames used, stream the answer. */
export async function* askAboutClip(
  engine: ModelEngine | Promise<ModelEngine>,
  extractor: ClipFeatureExtractor,
  req: ClipRequest & GenerateOptions & { question: string },
): AsyncGenerator<AskEvent> {
  const conversation = await ClipConversation.open(engine, extractor, req);
  try {
    yield conversation.framesEvent;
    yield* conversation.ask(req.question, req);
  } finally {
    conversation.close();
  }
}
