import { CoreApp, DataQueryRequest } from '@grafana/data';

import { diffRanges, formatVariableValue } from './datasource';
import { EmberQuery } from './types';

import { CPU, FROM, TO, datasource, range, recordCalls } from './testHelpers';

function request(targets: Array<Partial<EmberQuery>>, extra: Partial<DataQueryRequest<EmberQuery>> = {}) {
  return {
    requestId: 'test',
    interval: '30s',
    intervalMs: 30_000,
    range,
    scopedVars: {},
    timezone: 'utc',
    app: CoreApp.Explore,
    startTime: 0,
    targets: targets.map((t, i) => ({
      refId: String.fromCharCode(65 + i),
      queryType: 'both',
      labelSelector: '{}',
      groupBy: [],
      profileTypeId: CPU,
      ...t,
    })),
    ...extra,
  } as DataQueryRequest<EmberQuery>;
}

const FLAMEGRAPH = { names: ['total', 'main'], levels: [{ values: [0, 5, 0, 0] }, { values: [0, 5, 5, 1] }], total: 5 };

describe('query', () => {
  it('asks for the flame graph and the series in Explore, with the tenant header', async () => {
    const calls = recordCalls({
      SelectMergeStacktraces: { flamegraph: FLAMEGRAPH },
      SelectSeries: { series: [{ labels: [], points: [{ timestamp: FROM, value: 5 }] }] },
    });
    const ds = datasource({ tenantId: 'team-a' });
    const res = await ds.query(request([{ labelSelector: '{service_name="api"}', groupBy: ['pod'], maxNodes: 100 }]));
    const byMethod = Object.fromEntries(calls.map((c) => [c.url.split('/').pop(), c]));
    expect(byMethod.SelectMergeStacktraces.url).toBe(
      '/api/datasources/proxy/uid/ember/querier.v1.QuerierService/SelectMergeStacktraces'
    );
    expect(byMethod.SelectMergeStacktraces.method).toBe('POST');
    expect(byMethod.SelectMergeStacktraces.body).toEqual({
      profileTypeID: CPU,
      labelSelector: '{service_name="api"}',
      start: String(FROM),
      end: String(TO),
      maxNodes: '100',
    });
    expect(byMethod.SelectSeries.body).toEqual({
      profileTypeID: CPU,
      labelSelector: '{service_name="api"}',
      start: String(FROM),
      end: String(TO),
      groupBy: ['pod'],
      step: 30,
    });
    expect(calls.every((c) => c.headers['X-Scope-OrgID'] === 'team-a')).toBe(true);
    expect(res.data.map((f) => f.name)).toEqual(['response', 'series']);
  });

  it('sends no tenant header without a tenant, and never a step below the minimum', async () => {
    const calls = recordCalls();
    await datasource({ minStep: '1m' }).query(request([{ queryType: 'metrics' }], { intervalMs: 1000 }));
    expect(calls).toHaveLength(1);
    expect(calls[0].headers['X-Scope-OrgID']).toBeUndefined();
    expect(calls[0].body.step).toBe(60);
  });

  it('draws only the flame graph of a "both" query in a dashboard', async () => {
    const calls = recordCalls({ SelectMergeStacktraces: { flamegraph: FLAMEGRAPH } });
    const res = await datasource().query(request([{}], { app: CoreApp.Dashboard }));
    expect(calls.map((c) => c.url.split('/').pop())).toEqual(['SelectMergeStacktraces']);
    expect(res.data).toHaveLength(1);
  });

  it('asks for the spans of a span selector, exemplars, the average and a fixed step as Pyroscope does', async () => {
    const calls = recordCalls();
    await datasource().query(
      request([{ spanSelector: ['9a1b', 'ff02'], includeExemplars: true, aggregation: 'average', step: 5 }])
    );
    const byMethod = Object.fromEntries(calls.map((c) => [c.url.split('/').pop(), c.body]));
    expect(byMethod.SelectMergeSpanProfile).toMatchObject({ spanSelector: ['9a1b', 'ff02'], profileTypeID: CPU });
    expect(byMethod.SelectMergeStacktraces).toBeUndefined();
    expect(byMethod.SelectSeries).toMatchObject({
      exemplarType: 'EXEMPLAR_TYPE_INDIVIDUAL',
      aggregation: 'TIME_SERIES_AGGREGATION_TYPE_AVERAGE',
      step: 5,
    });
  });

  it('compares the two halves of the range in a diff of one selector', async () => {
    const calls = recordCalls({
      Diff: { flamegraph: { names: ['total'], levels: [{ values: [0, 1, 0, 0, 2, 0, 0] }] } },
    });
    const res = await datasource().query(request([{ queryType: 'diff', labelSelector: '{service_name="api"}' }]));
    const mid = String((FROM + TO) / 2);
    expect(calls[0].body).toEqual({
      left: { profileTypeID: CPU, labelSelector: '{service_name="api"}', start: String(FROM), end: mid },
      right: { profileTypeID: CPU, labelSelector: '{service_name="api"}', start: mid, end: String(TO) },
    });
    expect(res.data[0].fields.map((f: { name: string }) => f.name)).toContain('valueRight');
  });

  it('replaces template variables and adds ad hoc filters to every selector', async () => {
    const calls = recordCalls();
    const ds = datasource({}, { service: ['api', 'web.1'], type: CPU });
    await ds.query(
      request(
        [
          {
            queryType: 'diff',
            profileTypeId: '$type',
            labelSelector: '{service_name=~"$service"}',
            comparison: { labelSelector: '{service_name="db"}' },
          },
        ],
        {
          filters: [
            { key: 'env', operator: '=', value: 'prod' },
            { key: 'x', operator: '<', value: '1' },
          ],
        }
      )
    );
    const body = calls[0].body as { left: Record<string, string>; right: Record<string, string> };
    expect(body.left.profileTypeID).toBe(CPU);
    expect(body.left.labelSelector).toBe('{service_name=~"(api|web\\\\.1)",env="prod"}');
    expect(body.right.labelSelector).toBe('{service_name="db",env="prod"}');
    // Different selectors compare the whole range.
    expect([body.left.start, body.left.end, body.right.start, body.right.end]).toEqual(
      [FROM, TO, FROM, TO].map(String)
    );
  });

  it("reports Ember's message for the query that failed", async () => {
    recordCalls({}, 400);
    const res = await datasource().query(request([{ queryType: 'profile' }]));
    expect(res.data).toEqual([]);
    expect(res.errors).toEqual([{ refId: 'A', message: 'SelectMergeStacktraces: bad selector' }]);
  });

  it('skips queries without a profile type and hidden ones', async () => {
    const calls = recordCalls();
    await datasource().query(request([{ profileTypeId: '' }, { hide: true }]));
    expect(calls).toHaveLength(0);
  });
});

describe('diffRanges', () => {
  it('reads Grafana time expressions of each side', () => {
    const now = Date.now();
    const r = diffRanges(
      {
        refId: 'A',
        queryType: 'diff',
        profileTypeId: CPU,
        labelSelector: '{}',
        groupBy: [],
        baseline: { from: 'now-2h', to: 'now-1h' },
      },
      range
    );
    expect(Math.abs(r.baseline.from - (now - 7_200_000))).toBeLessThan(60_000);
    expect(Math.abs(r.baseline.to - (now - 3_600_000))).toBeLessThan(60_000);
    expect(r.comparison).toEqual({ selector: '{}', from: (FROM + TO) / 2, to: TO });
  });

  it('says which time is not one', () => {
    expect(() =>
      diffRanges(
        {
          refId: 'A',
          queryType: 'diff',
          profileTypeId: CPU,
          labelSelector: '{}',
          groupBy: [],
          comparison: { from: 'yesterday' },
        },
        range
      )
    ).toThrow(/the comparison time "yesterday" is not a time/);
  });
});

describe('metadata', () => {
  it('lists label names of one profile type without internal labels', async () => {
    const calls = recordCalls({ LabelNames: { names: ['__name__', 'service_name', 'pod'] } });
    expect(await datasource().labelNames('{service_name="api"}', range, CPU)).toEqual(['service_name', 'pod']);
    expect(calls[0].body).toEqual({
      matchers: [`{__profile_type__="${CPU}",service_name="api"}`],
      start: String(FROM),
      end: String(TO),
    });
  });

  it('gives ad hoc filter keys and values for the other filters', async () => {
    const calls = recordCalls({ LabelValues: { names: ['prod', 'dev'] } });
    const values = await datasource().getTagValues({
      key: 'env',
      filters: [
        { key: 'service_name', operator: '=', value: 'api' },
        { key: 'env', operator: '=', value: 'x' },
      ],
      timeRange: range,
    });
    expect(values).toEqual([{ text: 'prod' }, { text: 'dev' }]);
    expect(calls[0].body).toMatchObject({ name: 'env', matchers: ['{service_name="api"}'] });
  });
});

describe('testDatasource', () => {
  it("runs Grafana's health check, then counts the profile types", async () => {
    const calls = recordCalls({ ProfileTypes: { profileTypes: [{ ID: CPU }] } });
    const res = await datasource({ tenantId: 't' }).testDatasource();
    expect(calls[0].body).toEqual({ start: '1000', end: '4000' });
    expect(res).toEqual({
      status: 'success',
      message: 'Ember answered for tenant "t": 1 profile type in the last 24 hours.',
    });
  });

  it.each([
    [404, /not an Ember or Pyroscope server/],
    [401, /refused the credentials/],
    [502, /cannot reach Ember/],
  ])('says what to fix when Ember answers %s', async (status, message) => {
    recordCalls({}, status);
    const res = await datasource().testDatasource();
    expect(res.status).toBe('error');
    expect(res.message).toMatch(message);
  });
});

describe('links', () => {
  it("opens the same query and range in Ember's UI", () => {
    const ds = datasource({ uiUrl: 'http://ember.example:4040/' });
    const link = ds.uiLink(
      { refId: 'A', queryType: 'profile', profileTypeId: CPU, labelSelector: '{service_name="api"}', groupBy: [] },
      range
    )!;
    const url = new URL(link);
    expect(url.origin).toBe('http://ember.example:4040');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      query: `${CPU}{service_name="api"}`,
      from: String(FROM),
      until: String(TO),
    });
  });

  it('opens a diff with both sides', () => {
    const link = datasource({ uiUrl: 'http://e' }).uiLink(
      {
        refId: 'A',
        queryType: 'diff',
        profileTypeId: CPU,
        labelSelector: '{}',
        groupBy: [],
        comparison: { labelSelector: '{a="b"}' },
      },
      range
    )!;
    const p = new URL(link).searchParams;
    expect([p.get('view'), p.get('lselector'), p.get('rselector'), p.get('lfrom'), p.get('runtil')]).toEqual([
      'diff',
      '{}',
      '{a="b"}',
      String(FROM),
      String(TO),
    ]);
  });

  it('gives no link through the proxy without a UI URL, and the direct URL otherwise', () => {
    const q: EmberQuery = { refId: 'A', queryType: 'profile', profileTypeId: CPU, labelSelector: '{}', groupBy: [] };
    expect(datasource().uiLink(q, range)).toBeUndefined();
    expect(datasource({}, {}, 'http://localhost:4040').uiLink(q, range)).toMatch(/^http:\/\/localhost:4040\/\?/);
  });
});

describe('formatVariableValue', () => {
  it('keeps one value and makes an escaped alternation of several', () => {
    expect(formatVariableValue('a.b')).toBe('a.b');
    expect(formatVariableValue(['a.b'])).toBe('a.b');
    expect(formatVariableValue(['a', 'b|c'])).toBe('(a|b\\\\|c)');
  });
});
