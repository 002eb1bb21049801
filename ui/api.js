// Ember's query API, same origin: Connect unary calls in protojson, and the
// decoding of the flame-graph wire forms into absolute per-level columns.

const QUERIER = "/querier.v1.QuerierService/";

/** Calls a querier method with a JSON body; throws an Error with the server's message. */
export async function call(method, body, signal) {
  const response = await fetch(QUERIER + method, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new Error(`${method}: ${response.status} ${text.slice(0, 200)}`);
  }
  if (!response.ok) throw new Error(json.message || `${method} answered ${response.status}`);
  return json;
}

/**
 * Decodes a FlameGraph (`levels` of delta-encoded `[x, total, self, name]`)
 * into `{names, total, maxSelf, levels: [{x, total, self, name, parent}]}` with
 * typed-array columns and absolute offsets; `parent` indexes the level above.
 */
export function decodeFlamegraph(fg) {
  const names = fg.names || [];
  const levels = (fg.levels || []).map((level) => {
    const v = level.values || [];
    const n = v.length / 4;
    const l = {
      x: new Float64Array(n),
      total: new Float64Array(n),
      self: new Float64Array(n),
      name: new Int32Array(n),
      parent: new Int32Array(n),
    };
    let end = 0;
    for (let i = 0; i < n; i++) {
      const x = end + Number(v[4 * i]);
      const total = Number(v[4 * i + 1]);
      l.x[i] = x;
      l.total[i] = total;
      l.self[i] = Number(v[4 * i + 2]);
      l.name[i] = Number(v[4 * i + 3]);
      end = x + total;
    }
    return l;
  });
  linkParents(levels);
  return { names, levels, total: Number(fg.total || 0), maxSelf: Number(fg.maxSelf || 0), diff: false };
}

/**
 * Decodes a FlameGraphDiff (7-tuples `[lx, ltotal, lself, rx, rtotal, rself,
 * name]`). The layout uses the sum of both sides, so the left and right widths
 * of a node add up; `total`/`self` are the sums and `ltotal`... each side.
 */
export function decodeDiff(fg) {
  const names = fg.names || [];
  const levels = (fg.levels || []).map((level) => {
    const v = level.values || [];
    const n = v.length / 7;
    const l = {
      x: new Float64Array(n),
      total: new Float64Array(n),
      self: new Float64Array(n),
      name: new Int32Array(n),
      parent: new Int32Array(n),
      ltotal: new Float64Array(n),
      lself: new Float64Array(n),
      rtotal: new Float64Array(n),
      rself: new Float64Array(n),
    };
    let lend = 0;
    let rend = 0;
    for (let i = 0; i < n; i++) {
      const lx = lend + Number(v[7 * i]);
      const lt = Number(v[7 * i + 1]);
      const rx = rend + Number(v[7 * i + 3]);
      const rt = Number(v[7 * i + 4]);
      lend = lx + lt;
      rend = rx + rt;
      l.x[i] = lx + rx;
      l.total[i] = lt + rt;
      l.ltotal[i] = lt;
      l.rtotal[i] = rt;
      l.lself[i] = Number(v[7 * i + 2]);
      l.rself[i] = Number(v[7 * i + 5]);
      l.self[i] = l.lself[i] + l.rself[i];
      l.name[i] = Number(v[7 * i + 6]);
    }
    return l;
  });
  linkParents(levels);
  return {
    names,
    levels,
    total: Number(fg.total || 0),
    maxSelf: Number(fg.maxSelf || 0),
    leftTicks: Number(fg.leftTicks || 0),
    rightTicks: Number(fg.rightTicks || 0),
    diff: true,
  };
}

/** Sets each node's parent: the last node above that starts at or before it. */
function linkParents(levels) {
  for (let d = 1; d < levels.length; d++) {
    const above = levels[d - 1];
    const here = levels[d];
    let p = 0;
    for (let i = 0; i < here.x.length; i++) {
      while (p + 1 < above.x.length && above.x[p + 1] <= here.x[i]) p++;
      here.parent[i] = p;
    }
  }
  if (levels.length) levels[0].parent.fill(-1);
}

/**
 * Returns one row per function: self summed over its nodes, total counted once
 * per stack (recursive calls do not count again); for diffs each side too.
 */
export function topTable(graph) {
  const rows = new Map();
  const { levels, names } = graph;
  for (let d = 1; d < levels.length; d++) {
    const l = levels[d];
    for (let i = 0; i < l.x.length; i++) {
      const name = l.name[i];
      let row = rows.get(name);
      if (!row) {
        row = { name: names[name], self: 0, total: 0, lself: 0, ltotal: 0, rself: 0, rtotal: 0 };
        rows.set(name, row);
      }
      row.self += l.self[i];
      if (graph.diff) {
        row.lself += l.lself[i];
        row.rself += l.rself[i];
      }
      if (!hasAncestorNamed(levels, d, i, name)) {
        row.total += l.total[i];
        if (graph.diff) {
          row.ltotal += l.ltotal[i];
          row.rtotal += l.rtotal[i];
        }
      }
    }
  }
  return [...rows.values()];
}

function hasAncestorNamed(levels, d, i, name) {
  let p = levels[d].parent[i];
  for (let up = d - 1; up >= 1; up--) {
    if (levels[up].name[p] === name) return true;
    p = levels[up].parent[p];
  }
  return false;
}

// --- a few protobuf bytes: SelectMergeProfile answers pprof only in proto ----

function varint(out, value) {
  let v = BigInt.asUintN(64, BigInt(value));
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
}

function field(out, number, wire) {
  varint(out, (number << 3) | wire);
}

function stringField(out, number, s) {
  const bytes = new TextEncoder().encode(s);
  field(out, number, 2);
  varint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/** Encodes a SelectMergeProfileRequest as protobuf. */
export function encodeSelectMergeProfile({ profileTypeID, labelSelector, start, end }) {
  const out = [];
  stringField(out, 1, profileTypeID);
  stringField(out, 2, labelSelector);
  field(out, 3, 0);
  varint(out, start);
  field(out, 4, 0);
  varint(out, end);
  return new Uint8Array(out);
}

/** Returns the merged pprof of a selection as a Blob. */
export async function pprofBlob(request) {
  const response = await fetch(QUERIER + "SelectMergeProfile", {
    method: "POST",
    headers: { "Content-Type": "application/proto" },
    body: encodeSelectMergeProfile(request),
  });
  if (!response.ok) throw new Error(`SelectMergeProfile answered ${response.status}: ${await response.text()}`);
  return response.blob();
}
