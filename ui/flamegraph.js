// A canvas flame graph (icicle: root on top). Draws only what is wider than
// half a pixel, so 50,000 nodes repaint in a few milliseconds; hit-testing is
// a binary search per level, not a DOM walk.

const ROW = 18;
const FONT = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";

/** Returns the package/module part of a frame name, which picks its colour. */
export function packageOf(name) {
  let s = name.replace(/\s*\(.*$/, "").trim();
  if (s.includes("::")) return s.split("::")[0].replace(/^</, "");
  const slash = s.lastIndexOf("/");
  if (slash >= 0) {
    const dot = s.indexOf(".", slash);
    return dot >= 0 ? s.slice(0, dot) : s.slice(0, slash);
  }
  const parts = s.split(".");
  if (parts.length > 2) return parts.slice(0, parts.length - 2).join(".");
  if (parts.length === 2) return parts[0];
  const colon = s.indexOf(":");
  return colon > 0 ? s.slice(0, colon) : s;
}

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

const colourCache = new Map();

/** Returns the stable colour of a frame: same package, same colour, in every view. */
export function colourOf(name, dark) {
  const key = (dark ? "d" : "l") + name;
  let c = colourCache.get(key);
  if (c) return c;
  if (name === "other" || name === "total") {
    c = dark ? "#5c5f66" : "#c1c2c5";
  } else {
    const h = hash(packageOf(name));
    const hue = h % 360;
    const sat = 50 + ((h >>> 9) % 20);
    const light = dark ? 38 + ((h >>> 17) % 10) : 66 + ((h >>> 17) % 10);
    c = `hsl(${hue} ${sat}% ${light}%)`;
  }
  colourCache.set(key, c);
  return c;
}

/** Returns a diff colour: red where the right side takes a larger share, green smaller. */
export function diffColour(lshare, rshare, dark) {
  if (lshare === 0 && rshare === 0) return dark ? "#5c5f66" : "#c1c2c5";
  const change = lshare > 0 ? (rshare - lshare) / lshare : 1;
  const k = Math.min(1, Math.abs(change));
  if (Math.abs(change) < 0.01) return dark ? "#4a4d52" : "#dee2e6";
  const hue = change > 0 ? 0 : 130;
  const light = dark ? 22 + 28 * k : 92 - 40 * k;
  return `hsl(${hue} ${dark ? 60 : 75}% ${light}%)`;
}

export class FlameGraph {
  /**
   * @param {HTMLElement} container
   * @param {{onZoom?: Function, format?: (v:number)=>string}} options
   */
  constructor(container, options = {}) {
    this.container = container;
    this.options = options;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "flame-canvas";
    this.canvas.setAttribute("role", "img");
    this.tooltip = document.createElement("div");
    this.tooltip.className = "tooltip";
    this.tooltip.hidden = true;
    container.append(this.canvas, this.tooltip);
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.graph = null;
    this.zoom = { depth: 0, index: 0 };
    this.search = "";
    this.focusName = null;
    this.lastRenderMs = 0;
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
    this.canvas.addEventListener("click", (e) => this.click(e));
    new ResizeObserver(() => this.graph && this.render()).observe(container);
  }

  /** Shows a decoded graph (see api.js); resets zoom. */
  setData(graph) {
    this.graph = graph;
    this.zoom = { depth: 0, index: 0 };
    this.computeMatches();
    this.render();
  }

  setSearch(text) {
    this.search = text || "";
    this.computeMatches();
    this.render();
    return this.matchShare;
  }

  /** Highlights one function exactly and zooms to its largest node. */
  setFocus(name) {
    this.focusName = name || null;
    this.computeMatches();
    if (this.focusName && this.graph) {
      let best = null;
      this.graph.levels.forEach((l, d) => {
        for (let i = 0; i < l.x.length; i++) {
          if (this.graph.names[l.name[i]] === name && (!best || l.total[i] > best.total)) {
            best = { depth: d, index: i, total: l.total[i] };
          }
        }
      });
      if (best) this.zoom = { depth: best.depth, index: best.index };
    }
    this.render();
    this.options.onZoom?.(this.zoomPath());
  }

  zoomTo(depth, index) {
    this.zoom = { depth, index };
    this.render();
    this.options.onZoom?.(this.zoomPath());
  }

  reset() {
    this.zoomTo(0, 0);
  }

  /** Returns the names from the root to the zoomed node. */
  zoomPath() {
    const path = [];
    if (!this.graph?.levels.length) return path;
    let i = this.zoom.index;
    for (let d = this.zoom.depth; d >= 0; d--) {
      path.unshift(this.graph.names[this.graph.levels[d].name[i]]);
      i = this.graph.levels[d].parent[i];
    }
    return path;
  }

  matches(nameIndex) {
    const name = this.graph.names[nameIndex];
    if (this.focusName) return name === this.focusName;
    return this.searchLower !== "" && name.toLowerCase().includes(this.searchLower);
  }

  /** Marks matching nodes and sums their share, counting nested matches once. */
  computeMatches() {
    this.searchLower = this.search.toLowerCase();
    this.matchCount = 0;
    this.matchShare = 0;
    this.matched = null;
    const g = this.graph;
    if (!g || (!this.searchLower && !this.focusName)) return;
    const nameMatch = g.names.map((_, i) => this.matches(i));
    let covered = new Uint8Array(1);
    let sum = 0;
    this.matched = g.levels.map((l, d) => {
      const m = new Uint8Array(l.x.length);
      const c = new Uint8Array(l.x.length);
      for (let i = 0; i < l.x.length; i++) {
        const under = d > 0 && covered[l.parent[i]];
        if (d > 0 && nameMatch[l.name[i]]) {
          m[i] = 1;
          this.matchCount++;
          if (!under) sum += l.total[i];
        }
        c[i] = under || m[i];
      }
      covered = c;
      return m;
    });
    this.matchShare = g.total > 0 ? sum / g.total : 0;
    this.matchTotal = sum;
  }

  /** The visible value range [x0, x1) and the zoomed node's ancestors. */
  view() {
    const l = this.graph.levels[this.zoom.depth];
    const x0 = l.x[this.zoom.index];
    const span = l.total[this.zoom.index] || 1;
    const path = new Int32Array(this.zoom.depth + 1);
    let i = this.zoom.index;
    for (let d = this.zoom.depth; d >= 0; d--) {
      path[d] = i;
      i = this.graph.levels[d].parent[i];
    }
    return { x0, span, path };
  }

  render() {
    const t0 = performance.now();
    const g = this.graph;
    const dark = document.documentElement.dataset.theme === "dark";
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(100, this.container.clientWidth);
    const rows = g ? g.levels.length : 0;
    const height = Math.max(ROW, rows * ROW);
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = width + "px";
      this.canvas.style.height = height + "px";
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = dark ? "#1a1b1e" : "#ffffff";
    ctx.fillRect(0, 0, width, height);
    if (!g || !rows) return;
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    const charW = ctx.measureText("m").width || 7;
    const { x0, span, path } = this.view();
    const scale = width / span;
    const searching = this.matched !== null;
    const textColour = dark ? "#e9ecef" : "#1a1b1e";
    const dimColour = dark ? "#2c2e33" : "#eceef0";
    let drawn = 0;
    for (let d = 0; d < rows; d++) {
      const l = g.levels[d];
      const y = d * ROW;
      const m = searching ? this.matched[d] : null;
      const drawNode = (i, px, pw, ancestor) => {
        const name = g.names[l.name[i]];
        let fill;
        if (searching && !m[i]) fill = dimColour;
        else if (g.diff) fill = diffColour(g.leftTicks ? l.ltotal[i] / g.leftTicks : 0, g.rightTicks ? l.rtotal[i] / g.rightTicks : 0, dark);
        else fill = colourOf(name, dark);
        ctx.fillStyle = fill;
        ctx.globalAlpha = ancestor ? 0.6 : 1;
        ctx.fillRect(px, y, Math.max(pw - 0.5, 0.5), ROW - 1);
        ctx.globalAlpha = 1;
        drawn++;
        if (pw > charW * 3) {
          const max = Math.floor((pw - 6) / charW);
          const label = name.length > max ? name.slice(0, Math.max(1, max - 1)) + "…" : name;
          ctx.fillStyle = searching && !m[i] ? (dark ? "#5c5f66" : "#adb5bd") : textColour;
          ctx.fillText(label, px + 3, y + ROW / 2);
        }
      };
      if (d <= this.zoom.depth) {
        drawNode(path[d], 0, width, d < this.zoom.depth);
        continue;
      }
      const x1 = x0 + span;
      // Nodes are ordered by x: find the first that ends after x0.
      let lo = 0;
      let hi = l.x.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (l.x[mid] + l.total[mid] <= x0) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < l.x.length; i++) {
        const x = l.x[i];
        if (x >= x1) break;
        const pw = l.total[i] * scale;
        if (pw < 0.5) continue;
        drawNode(i, (x - x0) * scale, pw, false);
      }
    }
    this.drawn = drawn;
    this.lastRenderMs = performance.now() - t0;
    this.container.dataset.rendered = String(drawn);
  }

  /** Returns the node under canvas coordinates, or null. */
  nodeAt(px, py) {
    const g = this.graph;
    if (!g) return null;
    const d = Math.floor(py / ROW);
    if (d < 0 || d >= g.levels.length) return null;
    const { x0, span, path } = this.view();
    if (d <= this.zoom.depth) return { depth: d, index: path[d] };
    const width = this.canvas.clientWidth;
    const v = x0 + (px / width) * span;
    const l = g.levels[d];
    let lo = 0;
    let hi = l.x.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (l.x[mid] > v) hi = mid - 1;
      else if (l.x[mid] + l.total[mid] <= v) lo = mid + 1;
      else return { depth: d, index: mid };
    }
    return null;
  }

  /** Returns canvas-relative centre of the widest visible node named `name` (for tests). */
  locate(name) {
    const g = this.graph;
    const { x0, span } = this.view();
    const width = this.canvas.clientWidth;
    let best = null;
    g.levels.forEach((l, d) => {
      if (d <= this.zoom.depth) return;
      for (let i = 0; i < l.x.length; i++) {
        if (g.names[l.name[i]] !== name) continue;
        const a = Math.max(l.x[i], x0);
        const b = Math.min(l.x[i] + l.total[i], x0 + span);
        if (b > a && (!best || b - a > best.w)) best = { w: b - a, x: ((a + b) / 2 - x0) * (width / span), y: d * ROW + ROW / 2 };
      }
    });
    return best && { x: best.x, y: best.y };
  }

  hover(e) {
    const rect = this.canvas.getBoundingClientRect();
    const node = this.nodeAt(e.clientX - rect.left, e.clientY - rect.top);
    if (!node) {
      this.tooltip.hidden = true;
      this.canvas.style.cursor = "default";
      return;
    }
    this.canvas.style.cursor = "pointer";
    const g = this.graph;
    const l = g.levels[node.depth];
    const i = node.index;
    const fmt = this.options.format || String;
    const pct = (v, of) => (of > 0 ? ((100 * v) / of).toFixed(2) + "%" : "–");
    const name = g.names[l.name[i]];
    let html;
    if (g.diff) {
      const ls = g.leftTicks ? l.ltotal[i] / g.leftTicks : 0;
      const rs = g.rightTicks ? l.rtotal[i] / g.rightTicks : 0;
      const change = ls > 0 ? (((rs - ls) / ls) * 100).toFixed(1) + "%" : "new";
      html = `<b></b><table>
        <tr><th></th><th>baseline</th><th>comparison</th></tr>
        <tr><td>total</td><td>${fmt(l.ltotal[i])} (${pct(l.ltotal[i], g.leftTicks)})</td><td>${fmt(l.rtotal[i])} (${pct(l.rtotal[i], g.rightTicks)})</td></tr>
        <tr><td>self</td><td>${fmt(l.lself[i])} (${pct(l.lself[i], g.leftTicks)})</td><td>${fmt(l.rself[i])} (${pct(l.rself[i], g.rightTicks)})</td></tr>
        <tr><td>change</td><td colspan="2">${change} of share</td></tr></table>`;
    } else {
      html = `<b></b><table>
        <tr><td>total</td><td>${fmt(l.total[i])}</td><td>${pct(l.total[i], g.total)}</td></tr>
        <tr><td>self</td><td>${fmt(l.self[i])}</td><td>${pct(l.self[i], g.total)}</td></tr></table>`;
    }
    this.tooltip.innerHTML = html;
    this.tooltip.querySelector("b").textContent = name;
    this.tooltip.hidden = false;
    const box = this.container.getBoundingClientRect();
    let left = e.clientX - box.left + 14;
    if (left + 320 > box.width) left = Math.max(0, e.clientX - box.left - 330);
    this.tooltip.style.left = left + "px";
    this.tooltip.style.top = e.clientY - box.top + 14 + "px";
  }

  click(e) {
    const rect = this.canvas.getBoundingClientRect();
    const node = this.nodeAt(e.clientX - rect.left, e.clientY - rect.top);
    if (!node) return;
    if (node.depth === this.zoom.depth && node.index === this.zoom.index && node.depth > 0) {
      // Clicking the zoomed frame again zooms back out one level.
      this.zoomTo(node.depth - 1, this.graph.levels[node.depth].parent[node.index]);
    } else {
      this.zoomTo(node.depth, node.index);
    }
  }
}
