/** The main window's size, position and maximized state, kept in the user-data folder between runs. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeAtomic } from '../atomic.ts';

const WindowStateSchema = z.object({
  x: z.number().int().optional(),
  y: z.number().int().optional(),
  width: z.number().int().min(400).max(20000),
  height: z.number().int().min(300).max(20000),
  maximized: z.boolean(),
});
export type WindowState = z.infer<typeof WindowStateSchema>;

export const DEFAULT_WINDOW: WindowState = { width: 1280, height: 820, maximized: false };

export async function loadWindowState(dataDir: string): Promise<WindowState> {
  try {
    const parsed = WindowStateSchema.safeParse(
      JSON.parse(await readFile(path.join(dataDir, 'window-state.json'), 'utf8')),
    );
    return parsed.success ? parsed.data : DEFAULT_WINDOW;
  } catch {
    return DEFAULT_WINDOW;
  }
}

export function saveWindowState(dataDir: string, state: WindowState): Promise<void> {
  return writeAtomic(path.join(dataDir, 'window-state.json'), JSON.stringify(state));
}

/** Keep `state` on screen: a window saved on a monitor that is gone comes back to the primary one. */
export function onScreen(
  state: WindowState,
  displays: { x: number; y: number; width: number; height: number }[],
): WindowState {
  if (state.x === undefined || state.y === undefined) return state;
  const visible = displays.some(
    (d) =>
      state.x! + 100 > d.x &&
      state.y! + 50 > d.y &&
      state.x! < d.x + d.width - 100 &&
      state.y! < d.y + d.height - 50,
  );
  return visible ? state : { width: state.width, height: state.height, maximized: state.maximized };
}
