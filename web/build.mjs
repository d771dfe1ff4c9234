// Builds web/dist: the dashboard (app.js + app.css, index.html), the department workbench
// (workbench.js + workbench.css, workbench.html) and MapLibre's worker, which both use.
// The backend serves dist/index.html at "/", dist/workbench.html at "/workbench" and the rest
// of dist/ under "/static/".
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const dist = here('./dist/');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

await build({
  // Two pages, two bundles: the workbench imports MapLibre but not deck.gl, so it loads
  // about half of what the dashboard does. No code splitting: each page is one request.
  entryPoints: { app: here('./src/main.js'), workbench: here('./src/workbench.js') },
  outdir: dist,
  bundle: true,
  // ESM output: loaded with <script type="module">, and every browser that runs
  // WebGL2 deck.gl runs modules anyway.
  format: 'esm',
  target: 'es2022',
  // deck.gl's WebGL-only build: leaves out the WebGPU code this page never uses (~150 kB).
  conditions: ['visgl:webgl-only'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
});

// MapLibre 6 runs its tile/GeoJSON work in a separate module worker file, which a bundle
// cannot inline; map.js and ticketmap.js point setWorkerUrl at this copy.
await copyFile(here('./node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs'),
  here('./dist/maplibre-gl-worker.mjs'));
await copyFile(here('./src/index.html'), here('./dist/index.html'));
await copyFile(here('./src/workbench.html'), here('./dist/workbench.html'));
