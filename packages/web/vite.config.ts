import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The dashboard: a single-page app served by `ratchet serve` from dist/ (API under /api/v1).
export default defineConfig({
  plugins: [react()],
  // Workspace packages by their TypeScript sources, as tsc and vitest read them (no build first).
  resolve: { conditions: ['source', 'browser', 'module', 'import', 'default'] },
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false },
  server: { proxy: { '/api': 'http://127.0.0.1:4400' } },
});
