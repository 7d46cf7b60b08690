import { describe, expect, it } from 'vitest';
import {
  clampSelection,
  followTime,
  formatBytes,
  formatClock,
  MIN_SELECTION_SEC,
  panView,
  setIn,
  setOut,
  tickStep,
  timeToX,
  xToTime,
  zoomLevel,
  zoomView,
} from './timeline-math.ts';

const whole = { start: 0, end: 100 };

describe('pixel ↔ time', () => {
  it('maps the view onto the width and back', () => {
    expect(timeToX(25, whole, 400)).toBe(100);
    expect(xToTime(100, whole, 400, 100)).toBe(25);
    const zoomed = { start: 40, end: 60 };
    expect(timeToX(50, zoomed, 200)).toBe(100);
    expect(xToTime(timeToX(47.5, zoomed, 200), zoomed, 200, 100)).toBeCloseTo(47.5);
  });

  it('keeps times from pixels outside the strip inside the video', () => {
    expect(xToTime(-50, whole, 400, 100)).toBe(0);
    expect(xToTime(900, whole, 400, 100)).toBe(100);
  });

  it('survives an empty strip', () => {
    expect(xToTime(10, whole, 0, 100)).toBe(0);
    expect(timeToX(10, { start: 5, end: 5 }, 100)).toBe(0);
  });
});

describe('selection', () => {
  it('orders a selection dragged right to left', () => {
    expect(clampSelection({ from: 8, to: 3 }, 10)).toEqual({ from: 3, to: 8 });
  });

  it('clamps a selection to the video', () => {
    expect(clampSelection({ from: -2, to: 14 }, 10)).toEqual({ from: 0, to: 10 });
  });

  it('widens a too-short selection to the minimum, inside the video', () => {
    const s = clampSelection({ from: 10, to: 10 }, 10)!;
    expect(s.to).toBe(10);
    expect(s.to - s.from).toBeCloseTo(MIN_SELECTION_SEC);
  });

  it('has no selection for a video without duration', () => {
    expect(clampSelection({ from: 0, to: 1 }, 0)).toBeNull();
  });

  it('sets in and out points against each other', () => {
    expect(setIn(null, 4, 10)).toEqual({ from: 4, to: 10 });
    expect(setOut({ from: 4, to: 10 }, 7, 10)).toEqual({ from: 4, to: 7 });
    // An in point after the out point moves the out point to the end; an out point before the in point, the in point to 0.
    expect(setIn({ from: 4, to: 7 }, 8, 10)).toEqual({ from: 8, to: 10 });
    expect(setOut({ from: 4, to: 7 }, 2, 10)).toEqual({ from: 0, to: 2 });
  });
});

describe('zoom', () => {
  it('zooms in around the anchor, keeping it in place on screen', () => {
    const v = zoomView(whole, 100, 4, 50);
    expect(v).toEqual({ start: 37.5, end: 62.5 });
    expect(timeToX(50, v, 400)).toBeCloseTo(timeToX(50, whole, 400));
  });

  it('never zooms out past the whole video nor in past one second', () => {
    expect(zoomView({ start: 10, end: 20 }, 100, 0.01, 15)).toEqual({ start: 0, end: 100 });
    const v = zoomView(whole, 100, 1000, 99.9);
    expect(v.end - v.start).toBe(1);
    expect(v.end).toBeLessThanOrEqual(100);
  });

  it('keeps a zoomed view inside the video near its ends', () => {
    expect(zoomView(whole, 100, 10, 0)).toEqual({ start: 0, end: 10 });
    expect(panView({ start: 95, end: 105 }, 100)).toEqual({ start: 90, end: 100 });
  });

  it('scrolls to follow the playhead without changing the zoom', () => {
    const v = followTime({ start: 0, end: 10 }, 30, 100);
    expect(v.end - v.start).toBe(10);
    expect(v.start).toBeLessThan(30);
    expect(v.end).toBeGreaterThan(30);
    expect(followTime({ start: 0, end: 10 }, 5, 100)).toEqual({ start: 0, end: 10 });
  });

  it('reports the zoom level', () => {
    expect(zoomLevel({ start: 0, end: 25 }, 100)).toBe(4);
  });

  it('chooses tick spacing that leaves room for labels', () => {
    expect(tickStep(whole, 1000)).toBe(10);
    expect(tickStep({ start: 0, end: 10 }, 1000)).toBe(1);
  });
});

describe('formatting', () => {
  it('prints clock times', () => {
    expect(formatClock(0)).toBe('0:00.0');
    expect(formatClock(62.55)).toBe('1:02.5');
    expect(formatClock(3723, false)).toBe('1:02:03');
  });

  it('prints sizes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(250 * 1024 * 1024)).toBe('250 MB');
  });
});
