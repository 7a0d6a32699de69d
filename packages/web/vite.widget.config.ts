import { defineConfig } from 'vite';

// The embeddable widget as one plain script (no React, no imports): dist/ratchet-widget.js.
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    lib: {
      entry: 'src/widget/script.ts',
      name: 'RatchetWidget',
      formats: ['iife'],
      fileName: () => 'ratchet-widget.js',
    },
  },
});
