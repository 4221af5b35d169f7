import { defineConfig } from 'vite';

// The built files are embedded in the skein binary (internal/dashboard/dist), so a
// fresh clone builds without npm; `make ui` rebuilds them.
export default defineConfig({
  base: './',
  build: {
    outDir: '../internal/dashboard/dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // Stable file names keep the committed diff small when the code changes.
    rollupOptions: { output: { entryFileNames: 'assets/app.js', assetFileNames: 'assets/[name][extname]', chunkFileNames: 'assets/[name].js' } },
  },
  server: { proxy: { '/api': 'http://127.0.0.1:7070' } },
});
