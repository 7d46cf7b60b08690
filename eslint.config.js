import js from '@eslint/js';
import boundaries from 'eslint-plugin-boundaries';
import svelte from 'eslint-plugin-svelte';
import tseslint from 'typescript-eslint';

/**
 * The layers of src-main/ and what each may import: the "May import" line of each folder's README, enforced.
 * shared = the top-level helpers any layer may use (errors, paths, csp, log, atomic, push-queue); root = services.ts, the
 * composition root. Tests (*.test.ts, *.fixture.ts) are exempt: they reach across layers to set things up.
 */
const LAYERS = [
  'media',
  'model',
  'cache',
  'qa',
  'find',
  'jobs',
  'library',
  'packs',
  'playback',
  'api',
  'cli',
  'electron',
];
const MAY_IMPORT = {
  media: [],
  model: [],
  cache: ['model'],
  qa: ['model', 'cache', 'media'],
  find: ['media', 'model', 'cache', 'qa', 'jobs', 'library'],
  jobs: ['media', 'model', 'qa'],
  library: [],
  packs: ['model', 'api'],
  playback: ['media'],
  api: ['root', 'qa', 'find', 'media', 'model', 'packs', 'jobs', 'library', 'playback'],
  cli: ['root', 'api', 'qa', 'find', 'media', 'model', 'packs', 'jobs', 'library', 'playback', 'cache'],
  electron: ['root', 'api', 'media', 'model', 'playback', 'library'],
  root: ['cache', 'find', 'jobs', 'media', 'model', 'qa'],
  renderer: ['api'],
};
const layerRules = {
  files: ['src-main/**/*.ts', 'src-renderer/**/*.ts', 'src-renderer/**/*.svelte'],
  ignores: ['**/*.test.ts', '**/*.fixture.ts'],
  plugins: { boundaries },
  settings: {
    'boundaries/include': ['src-main/**/*', 'src-renderer/**/*'],
    'boundaries/elements': [
      { type: 'shared', pattern: 'src-main/(errors|paths|csp|log|atomic|push-queue).ts', mode: 'file' },
      { type: 'root', pattern: 'src-main/services.ts', mode: 'file' },
      ...LAYERS.map((layer) => ({ type: layer, pattern: `src-main/${layer}` })),
      { type: 'renderer', pattern: 'src-renderer' },
    ],
  },
  rules: {
    'boundaries/dependencies': [
      2,
      {
        default: 'disallow',
        policies: [
          ...Object.entries(MAY_IMPORT).map(([from, to]) => ({
            from: { element: { type: from } },
            allow: { to: { element: { types: { anyOf: [from, 'shared', ...to] } } } },
          })),
          { from: { element: { type: 'shared' } }, allow: { to: { element: { type: 'shared' } } } },
        ],
      },
    ],
  },
};

export default tseslint.config(
  {
    ignores: [
      'node_modules',
      'dist-renderer',
      'dist-main',
      'release',
      'models',
      '.venv',
      'test/.fixtures',
      'bench/.cache',
    ],
  },
  js.configs.recommended,
  { files: ['bin/**/*.js', 'eslint.config.js'], languageOptions: { globals: { process: 'readonly' } } },
  ...tseslint.configs.recommended,
  ...svelte.configs.recommended,
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    languageOptions: { parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] } },
    // TypeScript (svelte-check) already knows which globals exist; no-undef does not understand TS types.
    rules: { 'no-undef': 'off' },
  },
  layerRules,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
);
