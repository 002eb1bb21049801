import { DataFrame, DataTopic, FieldType } from '@grafana/data';
import { checkFields } from '@grafana/flamegraph';

import {
  annotationFrame,
  diffFrame,
  exemplarFrame,
  flameGraphFrame,
  sampleTypeOf,
  seriesFrames,
  unitOf,
} from './frames';

const CPU = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';

/** Rows of a nested-set frame as [level, label, value, self, (valueRight, selfRight)]. */
function rows(frame: DataFrame): Array<Array<number | string>> {
  const f = (name: string) => frame.fields.find((x) => x.name === name);
  const label = f('label')!;
  const text: string[] = label.config.type?.enum?.text ?? [];
  return f('level')!.values.map((level: number, i: number) => {
    const row: Array<number | string> = [level, text[label.values[i]], f('value')!.values[i], f('self')!.values[i]];
    if (f('valueRight')) {
      row.push(f('valueRight')!.values[i], f('selfRight')!.values[i]);
    }
    return row;
  });
}

describe('flameGraphFrame', () => {
  // The example of DESIGN.md: stacks a;b;e=1, a;c=2, a;c;d=1.
  const wire = {
    names: ['total', 'a', 'c', 'd', 'b', 'e'],
    levels: [
      { values: [0, 4, 0, 0] },
      { values: [0, 4, 0, 1] },
      { values: [0, 1, 0, 4, 0, 3, 2, 2] },
      { values: [0, 1, 1, 5, 2, 1, 1, 3] },
    ],
    total: 4,
    maxSelf: 2,
  };

  it('lays the tree out depth first, children left to right', () => {
    const frame = flameGraphFrame(wire, { profileTypeId: CPU, refId: 'A' });
    expect(rows(frame)).toEqual([
      [0, 'total', 4, 0],
      [1, 'a', 4, 0],
      [2, 'b', 1, 0],
      [3, 'e', 1, 1],
      [2, 'c', 3, 2],
      [3, 'd', 1, 1],
    ]);
    expect(frame.refId).toBe('A');
    expect(frame.meta?.preferredVisualisationType).toBe('flamegraph');
  });

  it('is a frame that Grafana flame graph accepts, with the unit of the profile type', () => {
    const frame = flameGraphFrame(wire, { profileTypeId: CPU });
    expect(checkFields(frame)).toBeUndefined();
    expect(frame.fields.find((f) => f.name === 'label')!.type).toBe(FieldType.enum);
    expect(frame.fields.find((f) => f.name === 'value')!.config.unit).toBe('ns');
  });

  it('reads int64 values sent as strings (protojson)', () => {
    const strings = { ...wire, levels: wire.levels.map((l) => ({ values: l.values.map(String) })) };
    expect(rows(flameGraphFrame(strings, { profileTypeId: CPU }))).toEqual(
      rows(flameGraphFrame(wire, { profileTypeId: CPU }))
    );
  });

  it('gives an empty frame with the flame-graph fields for an empty answer', () => {
    const frame = flameGraphFrame({}, { profileTypeId: CPU });
    expect(frame.length).toBe(0);
    expect(checkFields(frame)).toBeUndefined();
  });

  it('refuses a level whose numbers are not quadruples', () => {
    expect(() =>
      flameGraphFrame({ names: ['total'], levels: [{ values: [0, 1, 0] }] }, { profileTypeId: CPU })
    ).toThrow(/level 0 has 3 numbers, not a multiple of 4/);
  });

  it('puts the links on the value field', () => {
    const links = [{ title: 'Open in Ember', url: 'http://ember/?query=x' }];
    const frame = flameGraphFrame(wire, { profileTypeId: CPU, links });
    expect(frame.fields.find((f) => f.name === 'value')!.config.links).toEqual(links);
  });
});

describe('diffFrame', () => {
  // Left a;b=1; right a;b=2, a;c=1: c is only on the right.
  const wire = {
    names: ['total', 'a', 'b', 'c'],
    levels: [
      { values: [0, 1, 0, 0, 3, 0, 0] },
      { values: [0, 1, 0, 0, 3, 0, 1] },
      { values: [0, 1, 1, 0, 2, 2, 2, 0, 0, 0, 0, 1, 1, 3] },
    ],
    total: 4,
    maxSelf: 2,
    leftTicks: 1,
    rightTicks: 3,
  };

  it('holds the baseline in value/self and the comparison in valueRight/selfRight', () => {
    const frame = diffFrame(wire, { profileTypeId: CPU });
    expect(rows(frame)).toEqual([
      [0, 'total', 1, 0, 3, 0],
      [1, 'a', 1, 0, 3, 0],
      [2, 'b', 1, 1, 2, 2],
      [2, 'c', 0, 0, 1, 1],
    ]);
    expect(checkFields(frame)).toBeUndefined();
    expect(frame.meta?.custom).toMatchObject({ leftTicks: 1, rightTicks: 3 });
  });
});

describe('seriesFrames', () => {
  const series = [
    {
      labels: [{ name: 'service_name', value: 'api' }],
      points: [
        { timestamp: '1000', value: 5 },
        { timestamp: 2000, value: 7, annotations: [{ key: 'pyroscope.ingest.throttled', value: 'x' }] },
        { timestamp: 3000, value: 1, annotations: [{ key: 'pyroscope.ingest.throttled', value: 'x' }] },
      ],
    },
    {
      labels: [{ name: 'service_name', value: 'db' }],
      points: [
        {
          timestamp: 1000,
          value: 2,
          exemplars: [
            {
              timestamp: '1000',
              profileId: 'p-1',
              spanId: 's-1',
              value: '2',
              labels: [
                { name: 'pod', value: 'db-0' },
                { name: '__name__', value: 'process_cpu' },
              ],
            },
          ],
        },
      ],
    },
  ];

  it('gives one numeric frame per series, then exemplars, then annotations', () => {
    const frames = seriesFrames(series, { profileTypeId: CPU, refId: 'B' });
    expect(frames.map((f) => f.name)).toEqual(['series', 'series', 'exemplar', 'annotations']);
    const [api, db] = frames;
    expect(api.fields[0]).toMatchObject({ name: 'time', type: FieldType.time, values: [1000, 2000, 3000] });
    expect(api.fields[1]).toMatchObject({
      name: 'cpu',
      type: FieldType.number,
      labels: { service_name: 'api' },
      values: [5, 7, 1],
    });
    expect(api.fields[1].config.unit).toBe('ns');
    expect(db.fields[1].labels).toEqual({ service_name: 'db' });
    expect(frames.every((f) => f.refId === 'B')).toBe(true);
  });

  it('gives no frame for no series', () => {
    expect(seriesFrames([], { profileTypeId: CPU })).toEqual([]);
  });
});

describe('exemplarFrame', () => {
  it('has the time, value, profile ID, span ID and one field per label, without __ labels', () => {
    const frame = exemplarFrame(
      { service_name: 'db' },
      [
        {
          timestamp: 5,
          profileId: 'p',
          spanId: 's',
          value: 9,
          labels: [
            { name: '__x', value: 'y' },
            { name: 'pod', value: 'a' },
          ],
        },
      ],
      'ns'
    );
    expect(frame.meta?.dataTopic).toBe(DataTopic.Annotations);
    expect(frame.fields.map((f) => [f.name, f.values[0]])).toEqual([
      ['Time', 5],
      ['Value', 9],
      ['Id', 'p'],
      ['Span ID', 's'],
      ['pod', 'a'],
      ['service_name', 'db'],
    ]);
  });
});

describe('annotationFrame', () => {
  it('makes one region of an annotation on consecutive points', () => {
    const frame = annotationFrame([
      { time: 3, key: 'k', value: 'v' },
      { time: 1, key: 'k', value: 'v' },
      { time: 2, key: 'k', value: 'v' },
      { time: 4, key: 'other', value: '' },
      { time: 5, key: 'k', value: 'v' },
    ]);
    const col = (name: string) => frame.fields.find((f) => f.name === name)!.values;
    expect(col('time')).toEqual([1, 4, 5]);
    expect(col('timeEnd')).toEqual([3, 4, 5]);
    expect(col('text')).toEqual(['k: v', 'other', 'k: v']);
    expect(col('isRegion')).toEqual([true, false, false]);
  });
});

describe('units', () => {
  it.each([
    [CPU, 'ns', 'cpu'],
    ['memory:alloc_space:bytes:space:bytes', 'bytes', 'alloc_space'],
    ['goroutines:goroutine:count:goroutine:count', 'short', 'goroutine'],
  ])('%s is in %s', (id, unit, type) => {
    expect(unitOf(id)).toBe(unit);
    expect(sampleTypeOf(id)).toBe(type);
  });
});
