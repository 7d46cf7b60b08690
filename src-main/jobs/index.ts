/** The batch engine's public surface (see README.md). */
export {
  discoverInputs,
  recogniseWithProbe,
  commonAncestor,
  VIDEO_EXTENSIONS,
  NON_VIDEO_EXTENSIONS,
} from './discover.ts';
export type { BatchInput, Discovery, DiscoverOptions } from './discover.ts';
export { parseShard, shardOf, inShard, selectShard, normalizeRelPath } from './shard.ts';
export type { Shard } from './shard.ts';
export { segmentRanges } from './segments.ts';
export type { Segment } from './segments.ts';
export {
  ResultRecordSchema,
  RECORD_VERSION,
  recordKey,
  recordFailed,
  toRecordError,
  fromRecordError,
  parseRecord,
} from './record.ts';
export type { ResultRecord, SegmentAnswer, RecordError } from './record.ts';
export { Journal, parseJournal, readJournal, latestRecords } from './journal.ts';
export type { JournalContents, JournalOpenOptions } from './journal.ts';
export { ModelGate, PauseSwitch } from './gate.ts';
export type { Lease, BackgroundLease } from './gate.ts';
export { ProgressTracker, isForward, progressRank } from './progress.ts';
export type { BatchEvent, ClipEvent, ClipStatus, OverallProgress } from './progress.ts';
export { runBatch, checkSpec, DEFAULT_PROMPT } from './runner.ts';
export type { BatchModel, BatchExtractor, BatchSpec, RunBatchOptions } from './runner.ts';
export {
  exporterFor,
  renderRecords,
  formatFromPath,
  parseFormat,
  csvLine,
  csvRows,
  CSV_COLUMNS,
  OUTPUT_FORMATS,
} from './export.ts';
export type { Exporter, OutputFormat } from './export.ts';
export { BatchOutput, journalPathFor } from './output.ts';
export type { BatchOutputOptions } from './output.ts';
export { mergeRecords, mergeFiles, mergeSource } from './merge.ts';
export type { MergeResult } from './merge.ts';
export { summarize } from './summarize.ts';
export type { SummarizeOptions, SummarizeEvent, BatchPlan, BatchOutcome } from './summarize.ts';
