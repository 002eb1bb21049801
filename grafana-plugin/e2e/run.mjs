// Runs the plugin against a real Ember in Debian's headless Chromium
// (tests/tests/e2e/grafana_plugin.rs starts Ember, pushes profiles and passes what it
// pushed): builds e2e/ with Vite, serves it on Ember's own origin, lets the page run the
// datasource's query() and render the frames with Grafana's flame graph, then checks
// the frames and the names on screen, and saves screenshots.
//
// Environment: EMBER_URL, EMBER_PLUGIN_EXPECT (JSON, see tests/tests/e2e/grafana_plugin.rs),
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium).
// Prints one line `EMBER_PLUGIN_RESULT <json>` on success; exits non-zero on failure.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.EMBER_URL;
const expect = JSON.parse(process.env.EMBER_PLUGIN_EXPECT ?? 'null');
const shots = process.env.SCREENSHOT_DIR;
if (!base || !expect || !shots) {
  console.error('set EMBER_URL, EMBER_PLUGIN_EXPECT and SCREENSHOT_DIR (tests/tests/e2e/grafana_plugin.rs does)');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const failures = [];
function check(cond, message) {
  if (!cond) {
    failures.push(message);
  }
}

// --- the page, built from the plugin's current sources ----------------------------
await build({ configFile: join(here, 'vite.config.ts'), logLevel: 'warn' });
const dist = join(here, 'dist');
const TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
};

const userDataDir = mkdtempSync(join(tmpdir(), 'ember-plugin-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1400, height: 1300 },
});
const result = {};
try {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The page lives under Ember's origin, so that the datasource's fetch reaches Ember
  // as it reaches it through Grafana's proxy: same origin, no CORS.
  await page.route(`${base}/plugin-e2e/**`, (route) => {
    const path = new URL(route.request().url()).pathname.replace(/^\/plugin-e2e\/?/, '') || 'index.html';
    const file = normalize(join(dist, path));
    if (!file.startsWith(dist)) {
      return route.fulfill({ status: 403 });
    }
    try {
      return route.fulfill({
        body: readFileSync(file),
        contentType: TYPES[extname(file)] ?? 'application/octet-stream',
      });
    } catch {
      return route.fulfill({ status: 404, body: `no ${path} in ${dist}` });
    }
  });
  // Every label Grafana's flame graph draws on its canvas.
  await page.addInitScript(() => {
    window.__drawn = [];
    const fillText = CanvasRenderingContext2D.prototype.fillText;
    CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
      window.__drawn.push(String(text));
      return fillText.call(this, text, ...rest);
    };
  });
  await page.addInitScript((config) => (window.EMBER_E2E = config), expect.config);
  await page.goto(`${base}/plugin-e2e/index.html`);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 60000 });
  const found = await page.evaluate(() => window.EMBER_E2E_RESULT);
  Object.assign(result, found);
  if (found.fatal) {
    throw new Error(`the page failed: ${found.fatal}`);
  }

  // --- frames of query() ----------------------------------------------------------
  check(found.errors.length === 0, `query() reported errors: ${found.errors.join('; ')}`);
  check(
    found.flame.fields.join(',') === 'level:number,value:number,self:number,label:enum',
    `flame-graph fields: ${found.flame.fields}`
  );
  check(found.flame.rootValue === expect.total, `flame graph total ${found.flame.rootValue}, pushed ${expect.total}`);
  check(found.flame.unit === 'ns', `flame graph unit ${found.flame.unit}`);
  check(
    found.flame.links.some((l) => l.startsWith(`${base}/?`)),
    `a link to Ember's UI: ${found.flame.links}`
  );
  check(found.series.frames >= 1, `series frames: ${found.series.frames}`);
  check(found.series.sum === expect.total, `series points sum to ${found.series.sum}, pushed ${expect.total}`);
  check(found.series.valueField === 'cpu', `series value field ${found.series.valueField}`);
  check(
    found.diff.fields.join(',') ===
      'level:number,value:number,self:number,label:enum,valueRight:number,selfRight:number',
    `diff fields: ${found.diff.fields}`
  );
  check(
    found.diff.rootValue === expect.baselineTotal,
    `diff baseline ${found.diff.rootValue}, pushed ${expect.baselineTotal}`
  );
  check(
    found.diff.rootValueRight === expect.comparisonTotal,
    `diff comparison ${found.diff.rootValueRight}, pushed ${expect.comparisonTotal}`
  );
  check(found.exemplarQueryFrames.includes('series'), `a metrics query with exemplars: ${found.exemplarQueryFrames}`);
  check(found.otherTenant.rootValue === 0, `another tenant sees ${found.otherTenant.rootValue}, not nothing`);

  // --- rendered by Grafana's flame graph ---------------------------------------------
  await page.screenshot({ path: join(shots, 'plugin-page.png'), fullPage: true });
  await page
    .waitForFunction(() => window.__drawn.length > 0, null, { timeout: 30000 })
    .catch(() => {
      throw new Error(
        `the flame graph drew nothing (page errors: ${errors.join('; ') || 'none'}); see ${shots}/plugin-page.png`
      );
    });
  const drawn = await page.evaluate(() => window.__drawn);
  for (const name of expect.canvasNames) {
    check(
      drawn.some((t) => t.startsWith(name)),
      `the flame graph canvas draws ${name}`
    );
  }
  const tableText = await page.locator('#flamegraph').innerText();
  for (const name of expect.tableNames) {
    check(tableText.includes(name), `the top table shows ${name}`);
  }
  const diffText = await page.locator('#diff').innerText();
  check(diffText.includes(expect.tableNames[0]), `the diff's top table shows ${expect.tableNames[0]}`);
  check(errors.length === 0, `page errors: ${errors.join('; ')}`);
  result.drawn = drawn.length;

  await page.screenshot({ path: join(shots, 'plugin-page.png'), fullPage: true });
  await page.locator('#flamegraph').screenshot({ path: join(shots, 'flamegraph.png') });
  await page.locator('#diff').screenshot({ path: join(shots, 'diff.png') });
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

if (failures.length) {
  console.error(`${failures.length} check(s) failed:\n- ${failures.join('\n- ')}`);
  console.error(`result: ${JSON.stringify(result)}`);
  process.exit(1);
}
console.log(`EMBER_PLUGIN_RESULT ${JSON.stringify(result)}`);
