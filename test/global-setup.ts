import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCli } from '../src-main/cli/build.ts';

/** What the tests run that is built: the bundled command line (`bin/loupe.js` runs it). */
export default async function setup() {
  await buildCli(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
}
