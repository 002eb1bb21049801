// The timeline: totals over time from SelectSeries, drawn on a canvas; a drag
// selects a sub-range and reports it in unix milliseconds.

export class Timeline {
  /**
   * @param {HTMLElement} container
   * @param {{onSelect: (startMs:number, endMs:number)=>void, colour?: string}} options
   */
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "timeline-canvas";
    container.append(this.canvas);
    this.points = [];
    this.start = 0;
    this.end = 1;
    this.highlight = null;
    this.drag = null;
    this.canvas.addEventListener("mousedown", (e) => {
      this.drag = { from: this.xOf(e), to: this.xOf(e) };
    });
    window.addEventListener("mousemove", (e) => {
      if (!this.drag) return;
      this.drag.to = this.xOf(e);
      this.render();
    });
    window.addEventListener("mouseup", () => {
      if (!this.drag) return;
      const { from, to } = this.drag;
      this.drag = null;
      const width = this.canvas.clientWidth;
      if (Math.abs(to - from) > 3) {
        const t = (px) => Math.round(this.start + (Math.min(Math.max(px, 0), width) / width) * (this.end - this.start));
        this.options.onSelect(t(Math.min(from, to)), t(Math.max(from, to)));
      }
      this.render();
    });
    new ResizeObserver(() => this.render()).observe(container);
  }

  xOf(e) {
    return e.clientX - this.canvas.getBoundingClientRect().left;
  }

  /** Shows `points` ([{timestamp, value}], summed over series) over [start, end]. */
  setData(points, start, end, highlight) {
    this.points = points;
    this.start = start;
    this.end = Math.max(end, start + 1);
    this.highlight = highlight || null;
    this.render();
  }

  render() {
    const dark = document.documentElement.dataset.theme === "dark";
    const dpr = window.devicePixelRatio || 1;
    const style = getComputedStyle(this.container);
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const width = Math.max(100, this.container.clientWidth - padding);
    const height = 70;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = width + "px";
    this.canvas.style.height = height + "px";
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const span = this.end - this.start;
    const xOf = (t) => ((t - this.start) / span) * width;
    // Time axis labels.
    ctx.fillStyle = dark ? "#909296" : "#868e96";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    for (let k = 0; k <= 4; k++) {
      const t = this.start + (span * k) / 4;
      const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      const w = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(Math.max(0, (width * k) / 4 - w / 2), width - w), height);
    }
    const plotH = height - 16;
    if (this.highlight) {
      ctx.fillStyle = dark ? "rgba(116,143,252,0.18)" : "rgba(76,110,245,0.12)";
      const a = xOf(this.highlight[0]);
      ctx.fillRect(a, 0, Math.max(2, xOf(this.highlight[1]) - a), plotH);
    }
    const max = Math.max(0, ...this.points.map((p) => p.value));
    if (max > 0) {
      const barW = Math.max(2, width / Math.max(this.points.length, 60) - 1);
      ctx.fillStyle = this.options.colour || (dark ? "#ff922b" : "#e8590c");
      for (const p of this.points) {
        const h = Math.max(1, (p.value / max) * (plotH - 4));
        ctx.fillRect(xOf(p.timestamp) - barW / 2, plotH - h, barW, h);
      }
    } else {
      ctx.fillStyle = dark ? "#5c5f66" : "#adb5bd";
      ctx.textBaseline = "middle";
      ctx.fillText("no profiles in this range", 8, plotH / 2);
    }
    ctx.strokeStyle = dark ? "#373a40" : "#dee2e6";
    ctx.beginPath();
    ctx.moveTo(0, plotH + 0.5);
    ctx.lineTo(width, plotH + 0.5);
    ctx.stroke();
    if (this.drag) {
      ctx.fillStyle = "rgba(76,110,245,0.3)";
      const a = Math.min(this.drag.from, this.drag.to);
      ctx.fillRect(a, 0, Math.abs(this.drag.to - this.drag.from), plotH);
    }
  }
}
