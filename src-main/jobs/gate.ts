/**
 * Sharing one loaded model between a batch and the person using the app.
 *
 * ModelGate has two lanes. The interactive lane never waits: a question asked in the app starts at once.
 * The background lane (the batch) waits whenever an interactive lease is held, and a background holder
 * calls `checkpoint()` between steps (before each clip's decode, before each answer, between generated
 * tokens) to step aside while one is. So an interactive question shares the CPU with at most the remainder
 * of one batch step (one frame-sampling call or one token), then runs alone; the batch carries on where it
 * stopped (a paused generation keeps its KV cache) once the interactive lane is idle for `cooldownMs`.
 *
 * PauseSwitch is the batch's own pause/resume: the same checkpoints wait while it is paused.
 */
import { cancelled } from '../errors.ts';

export interface Lease {
  /** Give the lane back (idempotent). */
  release(): void;
}

export interface BackgroundLease extends Lease {
  /** Wait while the interactive lane is busy (or the batch paused); resolves at once otherwise. */
  checkpoint(signal?: AbortSignal): Promise<void>;
}

/** Resolve when `ready()` holds, re-checking whenever `subscribe`'s callback fires; rejects on abort. */
function waitUntil(
  ready: () => boolean,
  subscribe: (wake: () => void) => () => void,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(cancelled());
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: unknown) => {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve();
    };
    const onAbort = () => done(cancelled());
    const unsubscribe = subscribe(() => ready() && done());
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class ModelGate {
  private interactiveHolders = 0;
  private backgroundHolders = 0;
  private idleSince = -Infinity;
  private cooldownTimer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();

  /** `cooldownMs`: how long the interactive lane must stay idle before the batch resumes (follow-ups come quickly). */
  constructor(readonly cooldownMs = 0) {}

  /** True while an interactive question holds (or recently held) the model: background work waits. */
  get interactiveBusy(): boolean {
    return this.interactiveHolders > 0 || performance.now() - this.idleSince < this.cooldownMs;
  }

  get backgroundActive(): number {
    return this.backgroundHolders;
  }

  /** Take the interactive lane (never waits). Release it in `finally`. */
  interactive(): Lease {
    this.interactiveHolders++;
    clearTimeout(this.cooldownTimer);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (--this.interactiveHolders > 0) return;
        this.idleSince = performance.now();
        this.wakeWhenCooledDown();
      },
    };
  }

  /** Run `fn` on the interactive lane. */
  async runInteractive<T>(fn: () => Promise<T>): Promise<T> {
    const lease = this.interactive();
    try {
      return await fn();
    } finally {
      lease.release();
    }
  }

  /** Take the background lane: waits until no interactive question is running. Release it in `finally`. */
  async background(signal?: AbortSignal, pause?: PauseSwitch): Promise<BackgroundLease> {
    const checkpoint = (s?: AbortSignal) => this.idle(s, pause);
    await checkpoint(signal);
    this.backgroundHolders++;
    let released = false;
    return {
      checkpoint,
      release: () => {
        if (released) return;
        released = true;
        this.backgroundHolders--;
      },
    };
  }

  /** Resolve once the interactive lane is idle (and `pause`, if given, is not paused). */
  idle(signal?: AbortSignal, pause?: PauseSwitch): Promise<void> {
    const ready = () => !this.interactiveBusy && !pause?.paused;
    return waitUntil(
      ready,
      (wake) => {
        this.listeners.add(wake);
        const off = pause?.onChange(wake);
        return () => {
          this.listeners.delete(wake);
          off?.();
        };
      },
      signal,
    );
  }

  /**
   * Wake waiters once the cooldown has passed. Timers may fire a little before `performance.now()` says the
   * cooldown is over, so re-arm for the remainder instead of waking waiters that would find the lane still busy.
   */
  private wakeWhenCooledDown(): void {
    clearTimeout(this.cooldownTimer);
    if (this.interactiveHolders > 0) return;
    const remaining = this.cooldownMs - (performance.now() - this.idleSince);
    if (remaining <= 0) return this.notify();
    this.cooldownTimer = setTimeout(() => this.wakeWhenCooledDown(), Math.ceil(remaining) + 1);
    this.cooldownTimer.unref?.();
  }

  private notify(): void {
    for (const wake of [...this.listeners]) wake();
  }
}

/** Pause and resume a batch: it stops at its next checkpoint and waits there until resumed. */
export class PauseSwitch {
  private state = false;
  private readonly listeners = new Set<() => void>();

  get paused(): boolean {
    return this.state;
  }

  pause(): void {
    this.set(true);
  }

  resume(): void {
    this.set(false);
  }

  /** Call `listener` whenever the switch flips; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolve when not paused. */
  wait(signal?: AbortSignal): Promise<void> {
    return waitUntil(
      () => !this.state,
      (wake) => this.onChange(wake),
      signal,
    );
  }

  private set(value: boolean): void {
    if (this.state === value) return;
    this.state = value;
    for (const listener of [...this.listeners]) listener();
  }
}
