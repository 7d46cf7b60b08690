import { describe, expect, it } from 'vitest';
import { PushQueue } from './push-queue.ts';

describe('PushQueue', () => {
  it('hands pushed items to the consumer in order, waiting for them, and ends after close', async () => {
    const queue = new PushQueue<number>();
    const seen: number[] = [];
    const reading = (async () => {
      for await (const n of queue) seen.push(n);
    })();
    queue.push(1);
    await new Promise((r) => setTimeout(r, 5));
    queue.push(2);
    queue.push(3);
    queue.close();
    queue.push(4); // after close: dropped
    await reading;
    expect(seen).toEqual([1, 2, 3]);
    expect(await queue.shift()).toEqual({ value: undefined, done: true });
  });
});
