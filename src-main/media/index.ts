/** The media layer: the only code in Loupe that runs ffmpeg/ffprobe. */
export { resolveBinaries, resetBinariesCache, ffmpegHasFilter } from './binaries.ts';
export type { BinarySource, MediaBinaries, ResolvedBinary } from './binaries.ts';
export { runProcess, liveProcessCount, killAllProcesses } from './process.ts';
export type { RunOptions, RunResult } from './process.ts';
export { probe, fileInput } from './probe.ts';
export type { MediaInfo, ProbeOptions } from './probe.ts';
export { frameTimes, parseTime, formatTime, clampRange } from './frame-times.ts';
export { sampleFrames, sampleFramesAt, decodeFramesAt, hashSampledBytes, PIL_BICUBIC } from './sample.ts';
export { prepareFrame, resizeRgb, squareAndResize, squareGeometry } from './preprocess.ts';
export type { PixelSpec, ResizeKernel, ResizeSpec, RgbImage } from './preprocess.ts';
export type { FrameFormat, Rgb, SampleOptions, SampledFrame } from './sample.ts';
export { thumbnails, thumbnailsAt, splitJpegs } from './thumbnails.ts';
export { makeSampleClip } from './sample-clip.ts';
export type { Thumbnail, ThumbnailOptions } from './thumbnails.ts';
export { decodeDense, denseTicks, MAX_TICKS } from './dense.ts';
export type { DenseFrame, DenseOptions } from './dense.ts';
export { setHardwareDecoding, hardwareDecoding } from './grab.ts';
export type { SampleMode } from './grab-plan.ts';
