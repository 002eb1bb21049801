// Drives Debian's headless Chromium against a running ember loaded with the
// shared profiles (tests/tests/e2e/ui.rs starts it and passes what it pushed).
//
// Environment: EMBER_URL, EMBER_UI_EXPECT (JSON: services, service, type,
// total, recentTotal, functions), SCREENSHOT_DIR, DOWNLOAD_DIR, CHROMIUM.
// Prints one line `EMBER_UI_RESULT <json>` on success; exits non-zero on failure.

import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.EMBER_URL;
const expect = JSON.parse(process.env.EMBER_UI_EXPECT);
const shots = process.env.SCREENSHOT_DIR;
const downloads = process.env.DOWNLOAD_DIR;
mkdirSync(shots, { recursive: true });

function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

const userDataDir = mkdtempSync(join(tmpdir(), "ember-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1400, height: 900 },
  acceptDownloads: true,
});
const result = {};
try {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const ready = () =>
    page.waitForFunction(() => document.body.dataset.state === "ready" && document.getElementById("flame").dataset.rendered, null, { timeout: 20000 });

  // --- explore: pickers, root total, function names ---------------------------
  await page.goto(`${base}/?theme=light`);
  await ready();
  const services = await page.$$eval("#service option", (os) => os.map((o) => o.value));
  for (const s of expect.services) check(services.includes(s), `service picker lists ${s}: ${services}`);
  await page.selectOption("#service", expect.service);
  await page.waitForFunction((s) => new URLSearchParams(location.search).get("query")?.includes(s), expect.service);
  const types = await page.$$eval("#type option", (os) => os.map((o) => o.value));
  check(types.includes(expect.type), `type picker lists ${expect.type}: ${types}`);
  await page.selectOption("#type", expect.type);
  await page.waitForFunction(
    (t) => document.getElementById("flame").dataset.total === t && document.body.dataset.state === "ready",
    String(expect.total),
    { timeout: 20000 },
  );
  const names = await page.$$eval("#top-table tbody tr", (rs) => rs.map((r) => r.dataset.name));
  for (const f of expect.functions) check(names.includes(f), `top table shows ${f}`);
  result.rootTotal = Number(await page.$eval("#flame", (e) => e.dataset.total));
  await shot("explore");

  // --- click a frame to zoom ---------------------------------------------------
  const target = await page.evaluate(() => {
    const g = window.emberFlame.graph;
    const l = g.levels[2] || g.levels[1];
    let best = 0;
    for (let i = 1; i < l.x.length; i++) if (l.total[i] > l.total[best]) best = i;
    return g.names[l.name[best]];
  });
  const pos = await page.evaluate((n) => window.emberFlame.locate(n), target);
  check(pos, `frame ${target} is visible`);
  const canvas = await page.$("#flame canvas");
  await canvas.click({ position: pos });
  await page.waitForFunction((n) => document.getElementById("flame").dataset.zoom.endsWith(n), target);
  check((await page.textContent("#breadcrumb")).includes(target), "breadcrumb names the zoomed frame");
  await shot("zoomed");
  await page.click("#reset-zoom");
  await page.waitForFunction(() => document.getElementById("flame").dataset.zoom === "total");

  // --- search ------------------------------------------------------------------
  const term = expect.search;
  await page.fill("#search", term);
  await page.waitForFunction(() => Number(document.getElementById("flame").dataset.matches) > 0);
  const searchText = await page.textContent("#search-result");
  check(/frames match · [\d.]+% of total/.test(searchText), `search result: ${searchText}`);
  check(new URL(page.url()).searchParams.get("search") === term, "search is in the URL");
  await shot("search");
  await page.fill("#search", "");

  // --- top table sorts ---------------------------------------------------------
  const selfValues = () => page.$$eval("#top-table tbody td[data-value]:nth-child(2)", (ts) => ts.map((t) => Number(t.dataset.value)));
  let v = await selfValues();
  check(v.every((x, i) => i === 0 || v[i - 1] >= x), "self sorted descending by default");
  await page.click('#top-table th[data-key="self"]');
  v = await selfValues();
  check(v.length > 1 && v.every((x, i) => i === 0 || v[i - 1] <= x), "self sorted ascending after a click");
  await page.click('#top-table th[data-key="total"]');
  const totals = await page.$$eval("#top-table tbody td[data-value]:nth-child(3)", (ts) => ts.map((t) => Number(t.dataset.value)));
  check(totals.every((x, i) => i === 0 || totals[i - 1] >= x), "total sorted descending");
  // Selecting a row focuses the flame graph on that function.
  const first = await page.$eval("#top-table tbody tr", (r) => r.dataset.name);
  await page.click("#top-table tbody tr");
  await page.waitForFunction((n) => new URLSearchParams(location.search).get("focus") === n, first);
  check(Number(await page.$eval("#flame", (e) => e.dataset.matches)) > 0, "focused function is highlighted");
  await shot("table-focus");
  await page.click("#reset-zoom");

  // --- a dragged range on the timeline changes the query ----------------------
  const tl = await (await page.$("#timeline canvas")).boundingBox();
  const requested = page.waitForRequest((r) => r.url().endsWith("/SelectMergeStacktraces"));
  await page.mouse.move(tl.x + tl.width * 0.8, tl.y + 20);
  await page.mouse.down();
  await page.mouse.move(tl.x + tl.width * 0.9, tl.y + 20, { steps: 5 });
  await page.mouse.move(tl.x + tl.width - 1, tl.y + 20, { steps: 5 });
  await page.mouse.up();
  const body = JSON.parse((await requested).postData());
  const url = new URL(page.url());
  check(url.searchParams.get("from") === body.start && url.searchParams.get("until") === body.end, `dragged range in URL and query: ${url.search} ${JSON.stringify(body)}`);
  await page.waitForFunction(
    (t) => document.getElementById("flame").dataset.total === t && document.body.dataset.state === "ready",
    String(expect.recentTotal),
    { timeout: 20000 },
  );
  await shot("timeline-selected");

  // --- diff view renders both sides -------------------------------------------
  await page.goto(`${base}/?view=diff&query=${encodeURIComponent(`${expect.type}{service_name="${expect.service}"}`)}`);
  await page.waitForFunction(
    () => Number(document.getElementById("flame").dataset.leftTotal) > 0 && Number(document.getElementById("flame").dataset.rightTotal) > 0 && document.body.dataset.state === "ready",
    null,
    { timeout: 20000 },
  );
  result.diff = await page.$eval("#flame", (e) => ({ left: Number(e.dataset.leftTotal), right: Number(e.dataset.rightTotal) }));
  check(result.diff.left + result.diff.right === expect.total, `diff sides add up: ${JSON.stringify(result.diff)}`);
  check((await page.$$("#top-table th[data-key=change]")).length === 1, "diff table shows the change");
  await shot("diff");

  // --- exports -----------------------------------------------------------------
  await page.goto(`${base}/?query=${encodeURIComponent(`${expect.type}{service_name="${expect.service}"}`)}`);
  await ready();
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-pprof")]);
  result.pprof = join(downloads, "ui-download.pb");
  await download.saveAs(result.pprof);
  const svg = await page.evaluate(async () => {
    const r = await fetch(document.getElementById("download-svg").href);
    const text = await r.text();
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    return {
      type: r.headers.get("content-type"),
      ok: !doc.querySelector("parsererror") && doc.documentElement.nodeName === "svg",
      titles: [...doc.querySelectorAll("title")].map((t) => t.textContent),
    };
  });
  check(svg.type === "image/svg+xml", `svg content type ${svg.type}`);
  check(svg.ok, "the SVG parses as SVG");
  for (const f of expect.svgFunctions) check(svg.titles.some((t) => t.startsWith(f + " (")), `SVG names ${f}`);

  // --- dark theme and the empty state -----------------------------------------
  await page.click("#theme");
  await page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
  check(new URL(page.url()).searchParams.get("theme") === "dark", "theme is in the URL");
  await shot("explore-dark");
  await page.goto(`${base}/?from=1000000000000&until=1000000060000`);
  await page.waitForFunction(() => document.body.dataset.state === "empty");
  check((await page.textContent("#empty")).includes("push.v1.PusherService/Push"), "empty state explains how to push");
  await shot("empty");

  // --- 50,000 nodes: first paint and zoom --------------------------------------
  await page.goto(`${base}/?from=1000000000000&until=1000000060000&theme=light`);
  await page.waitForFunction(() => document.body.dataset.state === "empty");
  result.bench = await page.evaluate(async () => {
    const { decodeFlamegraph } = await import("/ui/api.js");
    const { FlameGraph } = await import("/ui/flamegraph.js");
    // A random tree of 50,000 nodes, encoded as the wire form.
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const N = 50000;
    const parent = new Int32Array(N);
    const depth = new Int32Array(N);
    const selfv = new Float64Array(N);
    const name = new Int32Array(N);
    const names = ["total"];
    for (let k = 0; k < 4000; k++) names.push(`github.com/acme/pkg${k % 60}/mod.Func${k}`);
    for (let i = 1; i < N; i++) {
      const p = i < 20 ? 0 : Math.max(0, i - 1 - Math.floor(rnd() ** 3 * i));
      parent[i] = p;
      depth[i] = depth[p] + 1;
      selfv[i] = Math.floor(rnd() * 1000) + 1;
      name[i] = 1 + Math.floor(rnd() * 4000);
    }
    const total = Float64Array.from(selfv);
    for (let i = N - 1; i > 0; i--) total[parent[i]] += total[i];
    const children = Array.from({ length: N }, () => []);
    for (let i = 1; i < N; i++) children[parent[i]].push(i);
    const x = new Float64Array(N);
    const levels = [];
    const byLevel = [[0]];
    for (let d = 0; byLevel[d].length; d++) {
      byLevel.push([]);
      for (const n of byLevel[d]) {
        let cx = x[n] + selfv[n];
        for (const c of children[n]) {
          x[c] = cx;
          cx += total[c];
          byLevel[d + 1].push(c);
        }
      }
    }
    for (const nodes of byLevel) {
      if (!nodes.length) break;
      let end = 0;
      const values = [];
      for (const n of nodes) {
        values.push(String(x[n] - end), String(total[n]), String(selfv[n]), String(name[n]));
        end = x[n] + total[n];
      }
      levels.push({ values });
    }
    const wire = { names, levels, total: String(total[0]), maxSelf: "1000" };
    const host = document.createElement("div");
    host.className = "flame";
    host.style.width = "1200px";
    document.getElementById("main").append(host);
    const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    await frame();
    const t0 = performance.now();
    const graph = decodeFlamegraph(wire);
    const fg = new FlameGraph(host);
    fg.setData(graph);
    await frame();
    const firstPaint = performance.now() - t0;
    const zooms = [];
    for (let k = 0; k < 9; k++) {
      const d = 1 + (k % 3);
      const l = graph.levels[d];
      const t1 = performance.now();
      fg.zoomTo(d, Math.floor(l.x.length / 2));
      await frame();
      zooms.push(performance.now() - t1);
      const t2 = performance.now();
      fg.reset();
      await frame();
      zooms.push(performance.now() - t2);
    }
    zooms.sort((a, b) => a - b);
    return {
      nodes: N,
      levels: graph.levels.length,
      firstPaintMs: +firstPaint.toFixed(1),
      zoomMedianMs: +zooms[zooms.length >> 1].toFixed(1),
      zoomMaxMs: +zooms[zooms.length - 1].toFixed(1),
      drawMs: +fg.lastRenderMs.toFixed(1),
    };
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot("bench-50k");
  // Timings are recorded (docs/benchmarks.md), not asserted: CI machines vary.
  check(errors.length === 0, `no page errors: ${errors.join("; ")}`);
  console.log(`EMBER_UI_RESULT ${JSON.stringify(result)}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
