// Ember's answers turned into the DataFrames Grafana's panels read: the nested-set
// flame graph (and its diff form), one time series per group, exemplars and
// annotations. The shapes follow Grafana's own Pyroscope datasource, so the flame
// graph, time series and Explore treat them alike.

import { DataFrame, DataLink, DataTopic, FieldType, createDataFrame } from '@grafana/data';

import { ExemplarWire, FlameGraphDiffWire, FlameGraphWire, LabelPair, SeriesWire } from './types';

/** Returns the Grafana unit of a profile type ID's sample unit (`ns`, `bytes`, `short`). */
export function unitOf(profileTypeId: string): string {
  const unit = profileTypeId.split(':')[2] ?? '';
  switch (unit) {
    case 'nanoseconds':
      return 'ns';
    case 'microseconds':
      return 'µs';
    case 'milliseconds':
      return 'ms';
    case 'seconds':
      return 's';
    case 'bytes':
      return 'bytes';
    default:
      return 'short';
  }
}

/** Returns the sample type of a profile type ID (`cpu` of `process_cpu:cpu:...`). */
export function sampleTypeOf(profileTypeId: string): string {
  return profileTypeId.split(':')[1] || profileTypeId || 'value';
}

const num = (v: number | string | undefined): number => (v === undefined ? 0 : Number(v));

/** A node of a decoded flame graph: its level, name and the values of one or two sides. */
interface Node {
  level: number;
  x: number;
  width: number;
  name: string;
  values: number[];
  children: Node[];
}

/**
 * Decodes `levels` whose nodes are `stride` numbers long. `sides` gives, per side, where
 * its delta-encoded offset, total and self are in a node; the name index is last. A node's
 * parent is the last node of the level above that starts at or before it, in the layout
 * that adds every side's widths (how Ember lays out both forms).
 */
function decodeLevels(wire: FlameGraphWire, stride: number, sides: number[]): Node | undefined {
  const names = wire.names ?? [];
  const levels = wire.levels ?? [];
  let above: Node[] = [];
  let root: Node | undefined;
  for (let d = 0; d < levels.length; d++) {
    const v = levels[d].values ?? [];
    if (v.length % stride !== 0) {
      throw new Error(`flame graph level ${d} has ${v.length} numbers, not a multiple of ${stride}`);
    }
    const ends = sides.map(() => 0);
    const here: Node[] = [];
    let parent = 0;
    for (let i = 0; i < v.length; i += stride) {
      let x = 0;
      let width = 0;
      const values: number[] = [];
      sides.forEach((at, s) => {
        const start = ends[s] + num(v[i + at]);
        const total = num(v[i + at + 1]);
        ends[s] = start + total;
        x += start;
        width += total;
        values.push(total, num(v[i + at + 2]));
      });
      const nameIndex = num(v[i + stride - 1]);
      const node: Node = { level: d, x, width, name: names[nameIndex] ?? `#${nameIndex}`, values, children: [] };
      if (d === 0) {
        root ??= node;
      } else {
        while (parent + 1 < above.length && above[parent + 1].x <= x) {
          parent++;
        }
        if (!above.length) {
          throw new Error(`flame graph level ${d} has nodes but level ${d - 1} has none`);
        }
        above[parent].children.push(node);
      }
      here.push(node);
    }
    above = here;
  }
  return root;
}

/** Visits the tree depth first, children left to right: the nested-set row order. */
function depthFirst(root: Node | undefined, visit: (n: Node) => void) {
  const stack = root ? [root] : [];
  while (stack.length) {
    const n = stack.pop()!;
    visit(n);
    for (let i = n.children.length - 1; i >= 0; i--) {
      stack.push(n.children[i]);
    }
  }
}

/** Labels as an enum field: each distinct name once in the config, rows by index. */
function enumLabels(names: string[]) {
  const index = new Map<string, number>();
  const text: string[] = [];
  const values = names.map((name) => {
    let i = index.get(name);
    if (i === undefined) {
      i = text.length;
      index.set(name, i);
      text.push(name);
    }
    return i;
  });
  return { name: 'label', type: FieldType.enum, values, config: { type: { enum: { text } } } };
}

export interface FrameOptions {
  refId?: string;
  profileTypeId: string;
  /** Links added to the value fields (to Ember's UI). */
  links?: DataLink[];
}

/**
 * Returns Ember's `FlameGraph` as Grafana's nested-set flame-graph frame: one row per
 * node in depth-first order, with `level`, `value` (total), `self` and `label`.
 */
export function flameGraphFrame(wire: FlameGraphWire, options: FrameOptions): DataFrame {
  const rows: Node[] = [];
  depthFirst(decodeLevels(wire, 4, [0]), (n) => rows.push(n));
  const unit = unitOf(options.profileTypeId);
  const config = { unit, links: options.links };
  return createDataFrame({
    name: 'response',
    refId: options.refId,
    meta: { preferredVisualisationType: 'flamegraph', custom: { profileTypeId: options.profileTypeId } },
    fields: [
      { name: 'level', type: FieldType.number, values: rows.map((n) => n.level) },
      { name: 'value', type: FieldType.number, values: rows.map((n) => n.values[0]), config },
      { name: 'self', type: FieldType.number, values: rows.map((n) => n.values[1]), config: { unit } },
      enumLabels(rows.map((n) => n.name)),
    ],
  });
}

/**
 * Returns Ember's `FlameGraphDiff` as Grafana's diff flame-graph frame: `value`/`self`
 * are the baseline (left), `valueRight`/`selfRight` the comparison (right).
 */
export function diffFrame(wire: FlameGraphDiffWire, options: FrameOptions): DataFrame {
  const rows: Node[] = [];
  depthFirst(decodeLevels(wire, 7, [0, 3]), (n) => rows.push(n));
  const unit = unitOf(options.profileTypeId);
  return createDataFrame({
    name: 'response',
    refId: options.refId,
    meta: {
      preferredVisualisationType: 'flamegraph',
      custom: {
        profileTypeId: options.profileTypeId,
        leftTicks: num(wire.leftTicks),
        rightTicks: num(wire.rightTicks),
      },
    },
    fields: [
      { name: 'level', type: FieldType.number, values: rows.map((n) => n.level) },
      {
        name: 'value',
        type: FieldType.number,
        values: rows.map((n) => n.values[0]),
        config: { unit, links: options.links },
      },
      { name: 'self', type: FieldType.number, values: rows.map((n) => n.values[1]), config: { unit } },
      enumLabels(rows.map((n) => n.name)),
      { name: 'valueRight', type: FieldType.number, values: rows.map((n) => n.values[2]), config: { unit } },
      { name: 'selfRight', type: FieldType.number, values: rows.map((n) => n.values[3]), config: { unit } },
    ],
  });
}

const labelsOf = (pairs: LabelPair[] | undefined): Record<string, string> =>
  Object.fromEntries((pairs ?? []).map((l) => [l.name, l.value]));

/**
 * Returns one numeric frame per series (a `time` field and a value field named after
 * the sample type, carrying the series' labels), then one exemplar frame per series
 * that has exemplars, then one annotation frame when any point has annotations.
 */
export function seriesFrames(series: SeriesWire[], options: FrameOptions): DataFrame[] {
  const unit = unitOf(options.profileTypeId);
  const frames: DataFrame[] = [];
  const exemplarFrames: DataFrame[] = [];
  const annotations: TimedAnnotation[] = [];
  for (const s of series) {
    const labels = labelsOf(s.labels);
    const points = s.points ?? [];
    frames.push(
      createDataFrame({
        name: 'series',
        refId: options.refId,
        meta: { preferredVisualisationType: 'graph' },
        fields: [
          { name: 'time', type: FieldType.time, values: points.map((p) => num(p.timestamp)) },
          {
            name: sampleTypeOf(options.profileTypeId),
            type: FieldType.number,
            labels,
            values: points.map((p) => Number(p.value ?? 0)),
            config: { unit, links: options.links },
          },
        ],
      })
    );
    const exemplars = points.flatMap((p) => p.exemplars ?? []);
    if (exemplars.length) {
      exemplarFrames.push(exemplarFrame(labels, exemplars, unit, options.refId));
    }
    for (const p of points) {
      for (const a of p.annotations ?? []) {
        annotations.push({ time: num(p.timestamp), key: a.key ?? '', value: a.value ?? '' });
      }
    }
  }
  frames.push(...exemplarFrames);
  if (annotations.length) {
    frames.push(annotationFrame(annotations, options.refId));
  }
  return frames;
}

/**
 * Returns the exemplars of one series as Grafana's exemplar frame (`Time`, `Value`,
 * `Id` = profile ID, `Span ID`, then one field per label), on the annotations topic,
 * as Grafana's time series draws them.
 */
export function exemplarFrame(
  seriesLabels: Record<string, string>,
  exemplars: ExemplarWire[],
  unit: string,
  refId?: string
): DataFrame {
  const names = new Set(Object.keys(seriesLabels));
  for (const e of exemplars) {
    for (const l of e.labels ?? []) {
      if (!l.name.startsWith('__')) {
        names.add(l.name);
      }
    }
  }
  const sorted = [...names].sort();
  const rows = exemplars.map((e) => ({ e, labels: { ...seriesLabels, ...labelsOf(e.labels) } }));
  return createDataFrame({
    name: 'exemplar',
    refId,
    meta: { dataTopic: DataTopic.Annotations },
    fields: [
      { name: 'Time', type: FieldType.time, values: rows.map((r) => num(r.e.timestamp)) },
      {
        name: 'Value',
        type: FieldType.number,
        labels: seriesLabels,
        values: rows.map((r) => num(r.e.value)),
        config: { displayName: 'Value', unit },
      },
      {
        name: 'Id',
        type: FieldType.string,
        values: rows.map((r) => r.e.profileId ?? ''),
        config: { displayName: 'Profile ID' },
      },
      { name: 'Span ID', type: FieldType.string, values: rows.map((r) => r.e.spanId ?? '') },
      ...sorted.map((name) => ({ name, type: FieldType.string, values: rows.map((r) => r.labels[name] ?? '') })),
    ],
  });
}

export interface TimedAnnotation {
  time: number;
  key: string;
  value: string;
}

/**
 * Returns point annotations as Grafana's annotation frame (`time`, `timeEnd`, `text`,
 * `isRegion`); the same annotation on consecutive points is one region.
 */
export function annotationFrame(annotations: TimedAnnotation[], refId?: string): DataFrame {
  const sorted = [...annotations].sort((a, b) => a.time - b.time);
  const merged: Array<{ time: number; timeEnd: number; text: string }> = [];
  const last = new Map<string, (typeof merged)[number]>();
  for (const a of sorted) {
    const text = a.value ? `${a.key}: ${a.value}` : a.key;
    const open = last.get(text);
    if (open && merged[merged.length - 1] === open) {
      open.timeEnd = a.time;
      continue;
    }
    const item = { time: a.time, timeEnd: a.time, text };
    merged.push(item);
    last.set(text, item);
  }
  return createDataFrame({
    name: 'annotations',
    refId,
    meta: { dataTopic: DataTopic.Annotations },
    fields: [
      { name: 'time', type: FieldType.time, values: merged.map((m) => m.time) },
      { name: 'timeEnd', type: FieldType.time, values: merged.map((m) => m.timeEnd) },
      { name: 'text', type: FieldType.string, values: merged.map((m) => m.text) },
      { name: 'isRegion', type: FieldType.boolean, values: merged.map((m) => m.timeEnd > m.time) },
    ],
  });
}
