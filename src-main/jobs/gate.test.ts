import { describe, expect, it } from 'vitest';
import { ModelGate, PauseSwitch } from './gate.ts';
import { isForward, ProgressTracker } from './progress.ts';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('the model gate', () => {
  it('holds background work while an interactive question runs, and lets it go after', async () => {
    const gate = new ModelGate();
    const question = gate.interactive();
    let resumed = false;
    const waiting = gate.background().then((lease) => ((resumed = true), lease));
    await tick();
    expect(resumed).toBe(false);
    question.release();
    const lease = await waiting;
    expect(resumed).toBe(true);
    expect(gate.backgroundActive).toBe(1);
    lease.release();
    lease.release();
    expect(gate.backgroundActive).toBe(0);
  });

  it('never makes an interactive question wait for the batch', async () => {
    const gate = new ModelGate();
    const lease = await gate.background();
    const question = gate.interactive(); // synchronous: no waiting
    let passed = false;
    const checkpoint = lease.checkpoint().then(() => (passed = true));
    await tick();
    expect(passed).toBe(false);
    question.release();
    await checkpoint;
    lease.release();
  });

  it('waits at checkpoints while paused and rejects when cancelled', async () => {
    const gate = new ModelGate();
    const pause = new PauseSwitch();
    pause.pause();
    const controller = new AbortController();
    const waiting = gate.background(controller.signal, pause);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });
    const again = gate.background(undefined, pause);
    pause.resume();
    (await again).release();
  });
});

describe('progress', () => {
  it('refuses changes that would go backwards', () => {
    const tracker = new ProgressTracker([{ path: '/a', relPath: 'a' }]);
    expect(tracker.update(0, { state: 'running', stage: 'preparing', fraction: 0.5 })).not.toBeNull();
    expect(tracker.update(0, { state: 'running', stage: 'answering', fraction: 0.4 })).toBeNull();
    expect(tracker.update(0, { state: 'queued' })).toBeNull();
    expect(tracker.update(0, { state: 'done', resumed: false })).not.toBeNull();
    expect(tracker.update(0, { state: 'cancelled' })).toBeNull();
    expect(tracker.overall()).toMatchObject({ done: 1, total: 1, failed: 0, etaSec: 0 });
    expect(isForward({ state: 'queued' }, { state: 'failed', error: { code: 'X', message: '' } })).toBe(true);
  });
});
