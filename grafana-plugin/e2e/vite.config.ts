// Builds the browser test page (page.tsx): the plugin's real datasource and Grafana's
// flame graph component from npm, served by run.mjs on Ember's own origin.
import path from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  root: __dirname,
  base: '/plugin-e2e/',
  logLevel: 'warn',
  define: {
    // Some of @grafana/ui's dependencies read it; Vite replaces only process.env.NODE_ENV.
    'process.env': {},
  },
  esbuild: { jsx: 'automatic' },
  resolve: {
    // @grafana/flamegraph 11.3 pins its own React and emotion; one copy of each must run
    // (as inside Grafana, which provides them to every plugin).
    dedupe: ['react', 'react-dom', '@emotion/css', '@emotion/react'],
  },
  build: {
    outDir: path.join(__dirname, 'dist'),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 20000,
    reportCompressedSize: false,
    rollupOptions: {
      // @grafana/ui 12.0's ButtonCascader imports a name its Cascader module does not
      // export (webpack, which Grafana builds with, only warns); the page never uses it.
      shimMissingExports: true,
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE' && warning.code !== 'SHIMMED_EXPORT') {
          warn(warning);
        }
      },
    },
  },
});
