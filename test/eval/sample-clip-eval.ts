/**
 * The app's own sample clip ("Make a sample clip": a yellow circle crossing a blue background, joined after 4 s
 * by a red square), asked what a newcomer asks, through the app's decode path and the model pack in use.
 *
 *   npx tsx test/eval/sample-clip-eval.ts [--pack DIR]
 */
import os from 'node:os';
import path from 'node:path';
import { makeSampleClip } from '../../src-main/media/index.ts';
import { ClipConversation } from '../../src-main/qa/ask.ts';
import { Services } from '../../src-main/services.ts';
import { HONEST } from './video-eval.ts';

/** [question, expected answer, clip range or the whole clip]. */
export const SAMPLE_QUESTIONS: [string, string, { from?: number; to?: number }][] = [
  ['What color is the circle?', 'yellow', {}],
  ['How many shapes are there?', '2', {}],
  ['Describe the video.', 'A yellow circle and a red square.', {}],
  ['What color is the triangle?', 'There is no triangle.', {}],
  ['Is there a dog?', HONEST, {}],
  ['What shape is red?', 'square', {}],
  ['Is there a red square?', 'yes', {}],
  ['Is there a green circle?', 'no', {}],
  ['How many shapes are there?', '1', { from: 0, to: 3.5 }],
  ['Is there a red square?', 'no', { from: 0, to: 3.5 }],
];

export async function runSampleClipEval(
  services: Services,
  dir: string,
): Promise<{ question: string; expected: string; got: string }[]> {
  const clip = path.join(dir, 'loupe-sample.mp4');
  await makeSampleClip(clip);
  const engine = await services.engine();
  const extractor = await services.extractor();
  const out = [];
  for (const [question, expected, range] of SAMPLE_QUESTIONS) {
    const conversation = await ClipConversation.open(engine, extractor, { path: clip, ...range });
    let got = '';
    try {
      for await (const e of conversation.ask(question)) if (e.type === 'done') got = e.text.trim();
    } finally {
      conversation.close();
    }
    out.push({ question: `${question}${range.to ? ` (0–${range.to} s)` : ''}`, expected, got });
  }
  return out;
}

if (process.argv[1]?.endsWith('sample-clip-eval.ts')) {
  const i = process.argv.indexOf('--pack');
  const services = new Services({
    packDir: i > 0 ? process.argv[i + 1] : undefined,
    featureCache: false,
    dataDir: path.join(os.tmpdir(), 'loupe-sample-eval'),
  });
  const rows = await runSampleClipEval(services, os.tmpdir());
  console.log('| question | expected | answer | |\n|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.question} | ${r.expected} | ${r.got} | ${r.got.toLowerCase() === r.expected.toLowerCase() ? 'right' : '**wrong**'} |`,
    );
  console.log(
    `${rows.filter((r) => r.got.toLowerCase() === r.expected.toLowerCase()).length}/${rows.length} right`,
  );
  await services.dispose();
}
