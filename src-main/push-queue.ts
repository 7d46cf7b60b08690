/**
 * One push-to-pull queue: producers `push` items as they happen (callbacks, events, stream messages), one consumer
 * pulls them in order with `shift` or `for await`. `close` ends it once the pushed items are drained. Pure (no
 * Node, no DOM), so main (the batch runner and the batch event stream) and the renderer (the API client's
 * streams) share it.
 */
export class PushQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake?.();
  }

  /** No more items: the consumer gets what is queued, then done. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The next item, waiting for one; done once closed and empty. */
  async shift(): Promise<IteratorResult<T, undefined>> {
    while (true) {
      if (this.items.length) return { value: this.items.shift()!, done: false };
      if (this.closed) return { value: undefined, done: true };
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    while (true) {
      const next = await this.shift();
      if (next.done) return;
      yield next.value;
    }
  }
}
