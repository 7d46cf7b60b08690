import { ApiError } from '../api/client.ts';

/** Hand every event of a stream to `onEvent` until it ends; Stop (an abort) ends it without an error. */
export async function consumeStream<E>(
  events: AsyncIterable<E>,
  onEvent: (event: E) => void,
): Promise<{ stopped: boolean; error: ApiError | null }> {
  try {
    for await (const event of events) onEvent(event);
    return { stopped: false, error: null };
  } catch (e) {
    const error = ApiError.from(e);
    return error.code === 'CANCELLED' ? { stopped: true, error: null } : { stopped: false, error };
  }
}
