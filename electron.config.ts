/**
 * electron-builder configuration (`npm run dist`). The built-in model pack ships as an extra resource, and
 * onnxruntime-node's and koffi's native binaries and ffmpeg-static's binary are unpacked from the asar archive, since
 * native code cannot be loaded from inside it. `LOUPE_ELECTRON_DIST` points at an unpacked Electron (used
 * where no Electron binary can be downloaded: `--linux dir` then packs against that folder).
 */
import type { Configuration } from 'electron-builder';

const config: Configuration = {
  appId: 'app.loupe.desktop',
  productName: 'Loupe',
  copyright: 'Loupe contributors',
  directories: { output: 'release', buildResources: 'build' },
  // The main process is bundled by esbuild; tsx/esbuild only serve the development CLI.
  files: [
    'dist-main/**',
    'dist-renderer/**',
    'package.json',
    '!**/*.map',
    '!node_modules/{tsx,esbuild,@esbuild}/**',
  ],
  extraResources: [{ from: 'build/models', to: 'build/models', filter: ['**/*'] }],
  asarUnpack: [
    'node_modules/onnxruntime-node/**',
    'node_modules/koffi/**',
    'node_modules/@koromix/**',
    'node_modules/ffmpeg-static/**',
  ],
  extraMetadata: { main: 'dist-main/electron/main.js' },
  // Fuses flipped in the Electron binary itself: it cannot be turned into a plain Node.js (ELECTRON_RUN_AS_NODE,
  // NODE_OPTIONS, --inspect), and it runs only the app code in app.asar, checked against the archive's hash.
  electronFuses: {
    runAsNode: false,
    enableNodeOptionsEnvironmentVariable: false,
    enableNodeCliInspectArguments: false,
    onlyLoadAppFromAsar: true,
    enableEmbeddedAsarIntegrityValidation: true,
    enableCookieEncryption: true,
    grantFileProtocolExtraPrivileges: false,
  },
  ...(process.env.LOUPE_ELECTRON_DIST ? { electronDist: process.env.LOUPE_ELECTRON_DIST } : {}),
  publish: null,
  linux: {
    target: ['AppImage', 'deb'],
    category: 'AudioVideo',
    synopsis: 'Ask questions about your videos, offline',
  },
  deb: { depends: ['ffmpeg'] },
  win: { target: ['nsis'] },
  nsis: { oneClick: false, allowToChangeInstallationDirectory: true },
  mac: { target: ['dmg'], category: 'public.app-category.video', hardenedRuntime: true },
};

export default config;
