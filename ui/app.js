// Ember's UI: the state lives in the URL; every change rewrites it and redraws
// from Ember's own query API.

import { call, decodeDiff, decodeFlamegraph, pprofBlob, topTable } from "./api.js";
import { FlameGraph } from "./flamegraph.js";
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);

// --- state in the URL ---------------------------------------------------------

function readState() {
  const p = new URLSearchParams(location.search);
  return {
    view: p.get("view") === "diff" ? "diff" : "explore",
    query: p.get("query") || "",
    from: p.get("from") || "now-1h",
    until: p.get("until") || "now",
    search: p.get("search") || "",
    focus: p.get("focus") || "",
    sort: p.get("sort") || "self",
    dir: p.get("dir") === "asc" ? "asc" : "desc",
    filter: p.get("filter") || "",
    lselector: p.get("lselector"),
    rselector: p.get("rselector"),
    lfrom: p.get("lfrom"),
    luntil: p.get("luntil"),
    rfrom: p.get("rfrom"),
    runtil: p.get("runtil"),
    theme: p.get("theme"),
  };
}

let state = readState();

const DEFAULTS = { view: "explore", from: "now-1h", until: "now", sort: "self", dir: "desc" };

function writeState(patch, { reload = true, push = true } = {}) {
  state = { ...state, ...patch };
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (v === null || v === undefined || v === "" || DEFAULTS[k] === v) continue;
    p.set(k, v);
  }
  const url = `${location.pathname}?${p}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  if (reload) load();
}

window.addEventListener("popstate", () => {
  state = readState();
  load();
});

// --- times and selectors ------------------------------------------------------

/** Returns unix ms for `now`, `now-<n><s|m|h|d|w>` or a unix time. */
function toMs(t, now = Date.now()) {
  if (t === "now") return now;
  const m = /^now-(\d+)([smhdw])$/.exec(t);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 }[m[2]];
  const n = Number(t);
  if (!Number.isFinite(n)) return now;
  if (n < 1e10) return n * 1000;
  if (n < 1e13) return n;
  if (n < 1e16) return Math.floor(n / 1e3);
  return Math.floor(n / 1e6);
}

function splitQuery(query) {
  const brace = query.indexOf("{");
  if (brace < 0) return { type: query.trim(), selector: "{}" };
  return { type: query.slice(0, brace).trim(), selector: query.slice(brace) };
}

/** Parses `{a="x", b=~"y"}` into matchers; returns null when it cannot. */
function parseSelector(selector) {
  const body = selector.trim().replace(/^\{/, "").replace(/\}$/, "").trim();
  const out = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const m = re.exec(body);
    if (!m) return null;
    out.push({ name: m[1], op: m[2], value: m[3].replace(/\\(.)/g, "$1") });
    pos = re.lastIndex;
  }
  return out;
}

function formatSelector(matchers) {
  const esc = (v) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  return `{${matchers.map((m) => `${m.name}${m.op}"${esc(m.value)}"`).join(", ")}}`;
}

function unitOf(typeId) {
  return (typeId.split(":")[2] || "count").toLowerCase();
}

function formatter(unit) {
  const scaled = (v, steps) => {
    for (const [limit, div, suffix] of steps) if (Math.abs(v) >= limit) return +(v / div).toFixed(2) + suffix;
    return String(Math.round(v));
  };
  if (unit === "nanoseconds")
    return (v) => scaled(v, [[36e11, 36e11, " h"], [6e10, 6e10, " min"], [1e9, 1e9, " s"], [1e6, 1e6, " ms"], [1e3, 1e3, " µs"], [0, 1, " ns"]]);
  if (unit === "microseconds") return (v) => formatter("nanoseconds")(v * 1e3);
  if (unit === "bytes")
    return (v) => scaled(v, [[2 ** 40, 2 ** 40, " TiB"], [2 ** 30, 2 ** 30, " GiB"], [2 ** 20, 2 ** 20, " MiB"], [2 ** 10, 2 ** 10, " KiB"], [0, 1, " B"]]);
  return (v) => scaled(v, [[1e9, 1e9, " G"], [1e6, 1e6, " M"], [1e4, 1e3, " k"]]);
}

let format = formatter("count");

// --- widgets ------------------------------------------------------------------

const flame = new FlameGraph($("flame"), {
  format: (v) => format(v),
  onZoom: (path) => {
    $("breadcrumb").textContent = path.length > 1 ? path.slice(1).join(" › ") : "";
    $("breadcrumb").title = path.join(" › ");
    $("flame").dataset.zoom = path.join(";");
  },
});
window.emberFlame = flame;

const timeline = new Timeline($("timeline"), {
  onSelect: (start, end) => writeState({ from: String(start), until: String(end), focus: "" }),
});
const leftTimeline = new Timeline($("left-timeline"), {
  colour: "#4c6ef5",
  onSelect: (start, end) => writeState({ lfrom: String(start), luntil: String(end) }),
});
const rightTimeline = new Timeline($("right-timeline"), {
  colour: "#e8590c",
  onSelect: (start, end) => writeState({ rfrom: String(start), runtil: String(end) }),
});

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function showEmpty(html) {
  $("empty").hidden = !html;
  $("empty").innerHTML = html || "";
  document.querySelector(".panes").hidden = !!html;
}

const NO_DATA_HELP = `
  <h2>No profiles yet</h2>
  <p>Ember has not received a profile in this time range. Send one and it appears here within seconds:</p>
  <ul>
    <li><b>Any pprof file</b> — push it over the Connect API:
      <pre>curl -H 'content-type: application/json' \\
  -d "{\\"series\\":[{\\"labels\\":[{\\"name\\":\\"service_name\\",\\"value\\":\\"my-app\\"}],
       \\"samples\\":[{\\"rawProfile\\":\\"$(base64 -w0 cpu.pb.gz)\\"}]}]}" \\
  ${location.origin}/push.v1.PusherService/Push</pre></li>
    <li><b>A Pyroscope SDK</b> (Go, Java, Python, Ruby, .NET, Node.js, Rust): set its server address to <code>${location.origin}</code>.</li>
    <li><b>Kubernetes</b>: run the agent and annotate pods with <code>profiles.grafana.com/cpu.scrape: "true"</code> and <code>profiles.grafana.com/cpu.port: "6060"</code>.</li>
    <li><b>Grafana</b>: add a “Grafana Pyroscope” data source with URL <code>${location.origin}</code>.</li>
  </ul>
  <p class="muted">Already sending? Widen the time range above.</p>`;

// --- loading ------------------------------------------------------------------

let generation = 0;
let profileTypes = [];
let rows = [];

async function load() {
  const gen = ++generation;
  const stale = () => gen !== generation;
  showError("");
  document.documentElement.dataset.theme = state.theme || document.documentElement.dataset.theme;
  $("tab-explore").classList.toggle("active", state.view === "explore");
  $("tab-diff").classList.toggle("active", state.view === "diff");
  $("explore-view").hidden = state.view !== "explore";
  $("diff-view").hidden = state.view !== "diff";
  $("search").value = state.search;
  $("table-search").value = state.filter;
  syncRangeControls();

  const now = Date.now();
  const start = toMs(state.from, now);
  const end = toMs(state.until, now);
  try {
    const types = await call("ProfileTypes", { start: String(start), end: String(end) });
    if (stale()) return;
    profileTypes = types.profileTypes || [];
    if (!profileTypes.length) {
      fillSelect($("service"), [], "");
      fillSelect($("type"), [], "");
      showEmpty(NO_DATA_HELP);
      $("explore-view").hidden = true;
      $("diff-view").hidden = true;
      document.body.dataset.state = "empty";
      return;
    }
    let { type, selector } = splitQuery(state.query);
    let matchers = parseSelector(selector) || [];
    const services = (
      await call("LabelValues", { name: "service_name", start: String(start), end: String(end) })
    ).names || [];
    if (stale()) return;
    let service = matchers.find((m) => m.name === "service_name" && m.op === "=")?.value;
    if (!service || !services.includes(service)) {
      service = services[0] || "";
      matchers = [{ name: "service_name", op: "=", value: service }, ...matchers.filter((m) => m.name !== "service_name")];
    }
    // The types this service has: a cheap Series call would do, but LabelValues of __profile_type__ is not
    // guaranteed; list every type and keep the current one.
    const ids = profileTypes.map((t) => t.ID);
    if (!ids.includes(type)) type = ids.find((id) => id.startsWith("process_cpu:cpu:")) || ids[0];
    selector = formatSelector(matchers);
    const query = `${type}${selector}`;
    if (query !== state.query) writeState({ query }, { reload: false, push: false });
    fillSelect($("service"), services.map((s) => [s, s]), service);
    fillSelect($("type"), profileTypes.map((t) => [t.ID, `${t.name} · ${t.sampleType} (${t.sampleUnit})`]), type);
    $("selector").value = selector;
    renderChips(matchers);
    loadLabelNames(matchers, start, end, stale);
    format = formatter(unitOf(type));
    updateExports(type, selector, start, end);
    if (state.view === "explore") await loadExplore(type, selector, start, end, stale);
    else await loadDiff(type, selector, start, end, stale);
  } catch (e) {
    if (!stale()) showError(String(e.message || e));
  }
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => new Option(label, v, false, v === value)));
  select.value = value;
}

async function loadExplore(type, selector, start, end, stale) {
  const [fgResponse, series] = await Promise.all([
    call("SelectMergeStacktraces", { profileTypeID: type, labelSelector: selector, start: String(start), end: String(end), maxNodes: "16384" }),
    seriesPoints(type, selector, start, end),
  ]);
  if (stale()) return;
  timeline.setData(series, start, end);
  const graph = decodeFlamegraph(fgResponse.flamegraph || {});
  showGraph(graph, start, end);
}

async function loadDiff(type, selector, start, end, stale) {
  const mid = Math.round((start + end) / 2);
  const ls = state.lselector || selector;
  const rs = state.rselector || selector;
  const lstart = state.lfrom ? toMs(state.lfrom) : start;
  const lend = state.luntil ? toMs(state.luntil) : mid;
  const rstart = state.rfrom ? toMs(state.rfrom) : mid;
  const rend = state.runtil ? toMs(state.runtil) : end;
  $("left-selector").value = ls;
  $("right-selector").value = rs;
  $("left-range").textContent = rangeText(lstart, lend);
  $("right-range").textContent = rangeText(rstart, rend);
  const side = (sel, a, b) => ({ profileTypeID: type, labelSelector: sel, start: String(a), end: String(b), maxNodes: "16384" });
  const [diff, lpoints, rpoints] = await Promise.all([
    call("Diff", { left: side(ls, lstart, lend), right: side(rs, rstart, rend) }),
    seriesPoints(type, ls, start, end),
    seriesPoints(type, rs, start, end),
  ]);
  if (stale()) return;
  leftTimeline.setData(lpoints, start, end, [lstart, lend]);
  rightTimeline.setData(rpoints, start, end, [rstart, rend]);
  const graph = decodeDiff(diff.flamegraph || {});
  $("flame").dataset.leftTotal = String(graph.leftTicks);
  $("flame").dataset.rightTotal = String(graph.rightTicks);
  showGraph(graph, start, end);
}

async function seriesPoints(type, selector, start, end) {
  const step = Math.max(10, Math.round((end - start) / 1000 / 200));
  const r = await call("SelectSeries", { profileTypeID: type, labelSelector: selector, start: String(start), end: String(end), step });
  const byTime = new Map();
  for (const s of r.series || [])
    for (const p of s.points || []) {
      const t = Number(p.timestamp);
      byTime.set(t, (byTime.get(t) || 0) + Number(p.value));
    }
  return [...byTime].map(([timestamp, value]) => ({ timestamp, value })).sort((a, b) => a.timestamp - b.timestamp);
}

function rangeText(a, b) {
  const f = (t) => new Date(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return `${f(a)} – ${f(b)}`;
}

function showGraph(graph, start, end) {
  const empty = graph.total === 0;
  document.body.dataset.state = empty ? "empty" : "ready";
  if (empty) {
    showEmpty(`<h2>Nothing in this selection</h2>
      <p>No profiles match <code></code> between ${rangeText(start, end)}.</p>
      <p>Widen the time range, pick another profile type or service, or remove a label filter.</p>`);
    $("empty").querySelector("code").textContent = state.query;
    return;
  }
  showEmpty("");
  $("flame").dataset.total = String(graph.total);
  $("summary").textContent = graph.diff
    ? `baseline ${format(graph.leftTicks)} · comparison ${format(graph.rightTicks)}`
    : `total ${format(graph.total)} · ${graph.levels.reduce((n, l) => n + l.x.length, 0).toLocaleString()} frames`;
  flame.search = state.search;
  flame.focusName = null;
  flame.setData(graph);
  if (state.focus) flame.setFocus(state.focus);
  else flame.options.onZoom(flame.zoomPath());
  updateSearchResult();
  rows = topTable(graph);
  renderTable();
}

// --- label filters ------------------------------------------------------------

function currentMatchers() {
  return parseSelector(splitQuery(state.query).selector) || [];
}

function setMatchers(matchers) {
  const { type } = splitQuery(state.query);
  writeState({ query: type + formatSelector(matchers), focus: "" });
}

function renderChips(matchers) {
  $("chips").replaceChildren(
    ...matchers.map((m, i) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = `${m.name}${m.op}"${m.value}"`;
      const x = document.createElement("button");
      x.textContent = "×";
      x.title = "Remove this filter";
      x.onclick = () => setMatchers(matchers.filter((_, j) => j !== i));
      chip.append(x);
      return chip;
    }),
  );
}

async function loadLabelNames(matchers, start, end, stale) {
  try {
    const r = await call("LabelNames", { matchers: [formatSelector(matchers)], start: String(start), end: String(end) });
    if (stale()) return;
    const names = (r.names || []).filter((n) => !n.startsWith("__"));
    const select = $("filter-name");
    select.replaceChildren(new Option("+ filter by label…", ""), ...names.map((n) => new Option(n, n)));
  } catch {
    /* the builder stays empty; the raw selector still works */
  }
}

$("filter-name").addEventListener("change", async () => {
  const name = $("filter-name").value;
  const now = Date.now();
  const values = name
    ? (await call("LabelValues", { name, matchers: [splitQuery(state.query).selector], start: String(toMs(state.from, now)), end: String(toMs(state.until, now)) })).names || []
    : [];
  fillSelect($("filter-value"), values.map((v) => [v, v]), values[0] || "");
});

$("filter-add").addEventListener("click", () => {
  const name = $("filter-name").value;
  if (!name) return;
  const matchers = currentMatchers().filter((m) => !(m.name === name && name === "service_name"));
  matchers.push({ name, op: $("filter-op").value, value: $("filter-value").value });
  setMatchers(matchers);
});

$("selector").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  const text = $("selector").value.trim() || "{}";
  if (!parseSelector(text)) {
    showError(`cannot read the selector ${text}: use {name="value", other=~"regex.*"}`);
    return;
  }
  writeState({ query: splitQuery(state.query).type + text, focus: "" });
});

for (const [id, key] of [["left-selector", "lselector"], ["right-selector", "rselector"]]) {
  $(id).addEventListener("keydown", (e) => {
    if (e.key === "Enter") writeState({ [key]: $(id).value.trim() || "{}" });
  });
}

$("service").addEventListener("change", () => {
  const matchers = currentMatchers().filter((m) => m.name !== "service_name");
  matchers.unshift({ name: "service_name", op: "=", value: $("service").value });
  writeState({ query: splitQuery(state.query).type + formatSelector(matchers), focus: "", lselector: null, rselector: null });
});

$("type").addEventListener("change", () => {
  writeState({ query: $("type").value + splitQuery(state.query).selector, focus: "" });
});

// --- time range ---------------------------------------------------------------

function syncRangeControls() {
  const preset = [...$("preset").options].find((o) => o.value === state.from && state.until === "now");
  $("preset").value = preset ? preset.value : "custom";
  $("custom-range").hidden = !!preset;
  const local = (ms) => {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 6e4);
    return d.toISOString().slice(0, 19);
  };
  $("custom-from").value = local(toMs(state.from));
  $("custom-until").value = local(toMs(state.until));
}

$("preset").addEventListener("change", () => {
  const v = $("preset").value;
  if (v === "custom") {
    $("custom-range").hidden = false;
    return;
  }
  writeState({ from: v, until: "now", lfrom: null, luntil: null, rfrom: null, runtil: null });
});

$("custom-apply").addEventListener("click", () => {
  const from = new Date($("custom-from").value).getTime();
  const until = new Date($("custom-until").value).getTime();
  if (!(from < until)) {
    showError("the custom range must start before it ends");
    return;
  }
  writeState({ from: String(from), until: String(until), lfrom: null, luntil: null, rfrom: null, runtil: null });
});

// --- flame graph and top table ------------------------------------------------

function updateSearchResult() {
  const text = state.focus || state.search;
  $("search-result").textContent = text
    ? `${flame.matchCount} frames match · ${(100 * flame.matchShare).toFixed(2)}% of total`
    : "";
  $("flame").dataset.matches = String(flame.matchCount || 0);
}

$("search").addEventListener("input", () => {
  writeState({ search: $("search").value, focus: "" }, { reload: false, push: false });
  flame.focusName = null;
  flame.setSearch(state.search);
  updateSearchResult();
  renderTable();
});

$("reset-zoom").addEventListener("click", () => {
  writeState({ focus: "" }, { reload: false });
  flame.focusName = null;
  flame.setSearch(state.search);
  flame.reset();
  updateSearchResult();
  renderTable();
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && document.activeElement?.tagName !== "INPUT") $("reset-zoom").click();
});

function columns() {
  if (flame.graph?.diff)
    return [
      ["name", "Function"],
      ["lself", "Baseline self"],
      ["rself", "Comparison self"],
      ["change", "Change"],
    ];
  return [
    ["name", "Function"],
    ["self", "Self"],
    ["total", "Total"],
  ];
}

function renderTable() {
  const g = flame.graph;
  if (!g) return;
  const cols = columns();
  const sortKey = cols.some(([k]) => k === state.sort) ? state.sort : cols[1][0];
  const head = document.querySelector("#top-table thead tr");
  head.replaceChildren(
    ...cols.map(([key, label]) => {
      const th = document.createElement("th");
      th.dataset.key = key;
      th.textContent = label + (key === sortKey ? (state.dir === "asc" ? " ▲" : " ▼") : "");
      th.onclick = () => {
        const dir = key === sortKey && state.dir === "desc" ? "asc" : "desc";
        writeState({ sort: key, dir }, { reload: false, push: false });
        renderTable();
      };
      return th;
    }),
  );
  const share = (v, of) => (of > 0 ? v / of : 0);
  for (const r of rows)
    r.change = g.diff ? share(r.rself, g.rightTicks) - share(r.lself, g.leftTicks) : 0;
  const filter = state.filter.toLowerCase();
  const sign = state.dir === "asc" ? 1 : -1;
  const visible = rows
    .filter((r) => !filter || r.name.toLowerCase().includes(filter))
    .sort((a, b) => {
      const x = a[sortKey];
      const y = b[sortKey];
      if (sortKey === "name") return sign * String(x).localeCompare(String(y));
      return sign * (x - y) || a.name.localeCompare(b.name);
    })
    .slice(0, 500);
  const pct = (v, of) => (of > 0 ? ` <span class="muted">${((100 * v) / of).toFixed(1)}%</span>` : "");
  const body = document.querySelector("#top-table tbody");
  body.replaceChildren(
    ...visible.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      if (r.name === state.focus) tr.className = "selected";
      const name = document.createElement("td");
      name.className = "fn";
      name.title = r.name;
      name.textContent = r.name;
      tr.append(name);
      for (const [key] of cols.slice(1)) {
        const td = document.createElement("td");
        td.className = "num";
        td.dataset.value = String(r[key]);
        if (key === "change") {
          td.innerHTML = `${r.change > 0 ? "+" : ""}${(100 * r.change).toFixed(2)} pp`;
          td.classList.add(r.change > 0.0001 ? "worse" : r.change < -0.0001 ? "better" : "same");
        } else {
          const of = key.startsWith("l") ? g.leftTicks : key.startsWith("r") ? g.rightTicks : g.total;
          td.innerHTML = format(r[key]) + pct(r[key], of);
        }
        tr.append(td);
      }
      tr.onclick = () => {
        const focus = state.focus === r.name ? "" : r.name;
        writeState({ focus }, { reload: false });
        if (focus) flame.setFocus(focus);
        else {
          flame.focusName = null;
          flame.setSearch(state.search);
          flame.reset();
        }
        updateSearchResult();
        renderTable();
      };
      return tr;
    }),
  );
  if (!visible.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="${cols.length}" class="muted">No function matches “<span></span>”.</td>`;
    tr.querySelector("span").textContent = state.filter;
    body.append(tr);
  }
}

$("table-search").addEventListener("input", () => {
  writeState({ filter: $("table-search").value }, { reload: false, push: false });
  renderTable();
});

// --- views, theme, exports ----------------------------------------------------

for (const view of ["explore", "diff"])
  $(`tab-${view}`).addEventListener("click", () => writeState({ view, focus: "" }));

$("theme").addEventListener("click", () => {
  const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = theme;
  writeState({ theme }, { reload: false, push: false });
  flame.graph && flame.render();
  timeline.render();
  leftTimeline.render();
  rightTimeline.render();
});

let exportRequest = null;

function updateExports(type, selector, start, end) {
  exportRequest = { profileTypeID: type, labelSelector: selector, start, end };
  const p = new URLSearchParams({ query: type + selector, from: String(start), until: String(end) });
  $("download-svg").href = `/render.svg?${p}`;
}

$("download-pprof").addEventListener("click", async () => {
  if (!exportRequest) return;
  try {
    const blob = await pprofBlob(exportRequest);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const service = currentMatchers().find((m) => m.name === "service_name")?.value || "profile";
    a.download = `${service}.${exportRequest.profileTypeID.split(":")[0]}.pb`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  } catch (e) {
    showError(String(e.message || e));
  }
});

load();
