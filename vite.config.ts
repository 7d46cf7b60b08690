import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// The renderer: built to dist-renderer/, served by web mode (http.ts) and by Electron's loupe:// protocol.
export default defineConfig({
  root: 'src-renderer',
  base: './',
  plugins: [
    svelte({
      compilerOptions: {
        // Components take the one AppState (and its state objects) for the page's whole life, so reading
        // `app.library` once in a component's script is intended, not a missed reactive read.
        warningFilter: (warning) => warning.code !== 'state_referenced_locally',
      },
    }),
  ],
  build: {
    outDir: '../dist-renderer',
    emptyOutDir: true,
    // No inline scripts or data: modules: the CSP allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: 'es2022',
  },
});
