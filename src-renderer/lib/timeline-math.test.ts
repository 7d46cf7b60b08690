import { describe, expect, it } from 'vitest';
import {
  clampSelection,
  followTime,
  formatBytes,
  formatClock,
  frameTiles,
  MAX_TILES,
  mergeByTime,
  MIN_SELECTION_SEC,
  nearestIndex,
  panView,
  setIn,
  setOut,
  tickStep,
  timeToX,
  visibleSpan,
  xToTime,
  zoomLevel,
  zoomAround,
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
    // below a second, labels in tenths are exact (no 0.25 s step shown as 0:01.7 for 1.75 s)
    expect(tickStep({ start: 1.5, end: 4.5 }, 1000)).toBe(0.5);
    expect(tickStep({ start: 1.5, end: 4.5 }, 1200)).toBe(0.2);
  });
});

describe('zoom around the selection', () => {
  const inView = (v: { start: number; end: number }, r: { from: number; to: number }) =>
    r.from >= v.start - 1e-9 && r.to <= v.end + 1e-9;

  it('zooms around the playhead when nothing is selected', () => {
    expect(zoomAround(whole, 100, 2, null, 50)).toEqual(zoomView(whole, 100, 2, 50));
  });

  it('keeps a selection that fits the new span wholly in view, wherever it sits', () => {
    for (const sel of [
      { from: 0, to: 5 },
      { from: 2, to: 9 },
      { from: 60, to: 70 },
      { from: 91, to: 99 },
      { from: 95, to: 100 },
    ]) {
      let v = whole;
      for (let i = 0; i < 3; i++) {
        v = zoomAround(v, 100, 2, sel, 0); // the playhead far away does not matter
        expect(inView(v, sel)).toBe(true);
      }
      expect(v.end - v.start).toBeCloseTo(12.5);
    }
  });

  it('brings back into view a selection that was scrolled out of it', () => {
    const v = zoomAround({ start: 0, end: 20 }, 100, 2, { from: 70, to: 74 }, 5);
    expect(v.end - v.start).toBe(10);
    expect(inView(v, { from: 70, to: 74 })).toBe(true);
  });

  it('centres on a selection longer than the new span', () => {
    const v = zoomAround(whole, 100, 4, { from: 40, to: 80 }, 0);
    expect(v).toEqual({ start: 47.5, end: 72.5 });
  });
});

describe('lanes cut to the strip', () => {
  it('clips a range that runs past either edge of a zoomed view', () => {
    const view = { start: 40, end: 60 };
    expect(visibleSpan({ from: 0, to: 100 }, view, 200)).toEqual({ x: 0, w: 200 });
    expect(visibleSpan({ from: 30, to: 45 }, view, 200)).toEqual({ x: 0, w: 50 });
    expect(visibleSpan({ from: 55, to: 90 }, view, 200)).toEqual({ x: 150, w: 50 });
    expect(visibleSpan({ from: 45, to: 50 }, view, 200)).toEqual({ x: 50, w: 50 });
    expect(visibleSpan({ from: 70, to: 80 }, view, 200)).toBeNull();
    expect(visibleSpan({ from: 0, to: 39 }, view, 200)).toBeNull();
  });
});

describe('thumbnail tiles', () => {
  it('tiles whole frames at the video aspect, seamless, across the strip', () => {
    const tiles = frameTiles(whole, 800, 60, 16 / 9, 100);
    // 800 px / (60 × 16/9 = 106.7 px) → 7.5 tiles: 8, the last cut by the strip's edge.
    expect(tiles).toHaveLength(8);
    expect(tiles[0]!.x).toBe(0);
    for (const [i, t] of tiles.entries()) {
      expect(Math.abs(t.w - 60 * (16 / 9))).toBeLessThanOrEqual(1);
      if (i > 0) expect(t.x).toBe(tiles[i - 1]!.x + tiles[i - 1]!.w);
    }
    expect(tiles.at(-1)!.x + tiles.at(-1)!.w).toBeGreaterThanOrEqual(800);
    expect(tiles.at(-1)!.to).toBe(100);
  });

  it('keeps the tile width at every zoom level; tiles sit on a grid from 0 and cover the view', () => {
    for (const view of [
      { start: 0, end: 50 },
      { start: 33.3, end: 45.8 },
      { start: 99, end: 100 },
    ]) {
      const tiles = frameTiles(view, 1000, 64, 4 / 3, 100);
      const tileSec = tiles[0]!.to - tiles[0]!.from;
      expect(tiles[0]!.from / tileSec).toBeCloseTo(Math.round(tiles[0]!.from / tileSec));
      expect(tiles[0]!.from).toBeLessThanOrEqual(view.start);
      expect(tiles[0]!.x).toBeLessThanOrEqual(0);
      expect(tiles.at(-1)!.x + tiles.at(-1)!.w).toBeGreaterThanOrEqual(
        Math.min(1000, Math.round(timeToX(100, view, 1000))),
      );
      for (const t of tiles.slice(0, -1)) expect(Math.abs(t.w - 64 * (4 / 3))).toBeLessThanOrEqual(1);
    }
  });

  it('draws nothing before the strip is measured, and caps the count', () => {
    expect(frameTiles(whole, 0, 64, 16 / 9, 100)).toEqual([]);
    expect(frameTiles(whole, 800, 64, 0, 100)).toEqual([]);
    expect(frameTiles(whole, 100_000, 1, 0.01, 100).length).toBeLessThanOrEqual(MAX_TILES + 1);
  });

  it('finds the nearest thumbnail', () => {
    const thumbs = [0, 1, 2.5, 4].map((timeSec) => ({ timeSec }));
    expect(nearestIndex([], 3)).toBe(-1);
    expect(nearestIndex(thumbs, -1)).toBe(0);
    expect(nearestIndex(thumbs, 1.7)).toBe(1);
    expect(nearestIndex(thumbs, 1.8)).toBe(2);
    expect(nearestIndex(thumbs, 9)).toBe(3);
  });

  it('merges the thumbnails of a zoomed view into those of the whole video', () => {
    const merged = mergeByTime(
      [0, 2, 4].map((timeSec) => ({ timeSec, v: 'a' })),
      [3, 2].map((timeSec) => ({ timeSec, v: 'b' })),
    );
    expect(merged.map((f) => `${f.timeSec}${f.v}`)).toEqual(['0a', '2b', '3b', '4a']);
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
