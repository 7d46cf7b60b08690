/**
 * The stored shape of a moment search (the video's history keeps these); the API contract re-exports them, as it
 * does the library's records.
 */
import { z } from 'zod';
import { id, seconds } from '../library/records.ts';

export const FindIntervalSchema = z.object({ from: seconds, to: seconds, score: z.number().min(0).max(1) });
export type FindInterval = z.infer<typeof FindIntervalSchema>;
export const InstantScoreSchema = z.object({ t: seconds, score: z.number().min(0).max(1) });
export type InstantScore = z.infer<typeof InstantScoreSchema>;

/** One finished moment search, as the video's history keeps it. */
export const FindSearchSchema = z.object({
  id,
  videoId: id,
  query: z.string(),
  /** The presence question the model was asked at every instant. */
  question: z.string(),
  range: z.object({ from: seconds, to: seconds }),
  step: z.number().positive(),
  threshold: z.number().min(0).max(1),
  intervals: z.array(FindIntervalSchema),
  scores: z.array(InstantScoreSchema),
  createdAt: z.string(),
  model: z.string(),
  /** Instants whose features came from the frame-feature cache. */
  cachedFrames: z.number().int().min(0),
  totalMs: z.number().min(0),
});
export type FindSearch = z.infer<typeof FindSearchSchema>;
