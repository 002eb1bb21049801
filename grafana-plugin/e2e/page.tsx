// The browser test page: runs the plugin's real EmberDataSource.query() against the
// Ember this page is served from (run.mjs serves it on Ember's origin), with Grafana's
// backend service bound to fetch, then renders the flame-graph frames it returned with
// Grafana's own flame graph component. What it found goes to window.EMBER_E2E_RESULT.

import {
  CoreApp,
  DataFrame,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  PluginType,
  TimeRange,
  createTheme,
  dateTime,
} from '@grafana/data';
import { FlameGraph } from '@grafana/flamegraph';
import { TemplateSrv, setBackendSrv, setTemplateSrv } from '@grafana/runtime';
import React, { ComponentProps } from 'react';
import { createRoot } from 'react-dom/client';

import { EmberDataSource } from '../src/datasource';
import { fetchBackendSrv } from '../src/fetchBackendSrv';
import { EmberOptions, EmberQuery } from '../src/types';

/** What run.mjs asks for (window.EMBER_E2E). */
interface Config {
  tenant: string;
  otherTenant: string;
  profileTypeId: string;
  labelSelector: string;
  /** Unix ms. */
  from: number;
  to: number;
  /** Grafana time expressions of the diff's two sides. */
  baseline: { from: string; to: string };
  comparison: { from: string; to: string };
  /** Grafana's interval for the series, ms. */
  intervalMs: number;
}

declare global {
  interface Window {
    EMBER_E2E: Config;
    EMBER_E2E_RESULT?: unknown;
  }
}

// Outside Grafana nothing provides these: the backend service is a plain fetch to the
// page's origin (Ember), and no dashboard variables exist.
setBackendSrv(fetchBackendSrv());
const noVariables: TemplateSrv = {
  getVariables: () => [],
  replace: (target?: string) => target ?? '',
  containsTemplate: () => false,
  updateTimeRange: () => undefined,
};
setTemplateSrv(noVariables);

function datasource(tenantId: string): EmberDataSource {
  const settings = {
    id: 1,
    uid: 'ember',
    type: 'ember-datasource',
    name: 'Ember',
    url: location.origin,
    access: 'direct',
    readOnly: true,
    jsonData: { tenantId, uiUrl: location.origin },
    meta: { id: 'ember-datasource', name: 'Ember', type: PluginType.datasource, module: '', baseUrl: '', info: {} },
  } as unknown as DataSourceInstanceSettings<EmberOptions>;
  return new EmberDataSource(settings, noVariables);
}

function request(config: Config, target: Partial<EmberQuery>): DataQueryRequest<EmberQuery> {
  const range: TimeRange = {
    from: dateTime(config.from),
    to: dateTime(config.to),
    raw: { from: dateTime(config.from), to: dateTime(config.to) },
  };
  return {
    requestId: `e2e-${target.refId}`,
    app: CoreApp.Explore,
    interval: `${config.intervalMs / 1000}s`,
    intervalMs: config.intervalMs,
    range,
    scopedVars: {},
    timezone: 'utc',
    startTime: Date.now(),
    targets: [
      {
        refId: 'A',
        queryType: 'both',
        profileTypeId: config.profileTypeId,
        labelSelector: config.labelSelector,
        groupBy: [],
        ...target,
      },
    ],
  };
}

const field = (frame: DataFrame | undefined, name: string) => frame?.fields.find((f) => f.name === name);

/** The rows of a nested-set frame as plain numbers and names, for the test to check. */
function summary(frame: DataFrame | undefined) {
  const label = field(frame, 'label');
  const names: string[] = label?.config.type?.enum?.text ?? [];
  const col = (name: string) => (field(frame, name)?.values ?? []) as number[];
  return {
    fields: frame?.fields.map((f) => `${f.name}:${f.type}`) ?? [],
    rows: frame?.length ?? 0,
    rootValue: col('value')[0] ?? 0,
    rootValueRight: col('valueRight')[0],
    levelOneLabels: col('level')
      .map((level, i) => (level === 1 ? names[label!.values[i]] : undefined))
      .filter(Boolean),
    labels: names.length,
    unit: field(frame, 'value')?.config.unit,
    links: field(frame, 'value')?.config.links?.map((l) => l.url) ?? [],
  };
}

function errorsOf(response: DataQueryResponse): string[] {
  return (response.errors ?? []).map((e) => e.message ?? String(e));
}

// @grafana/flamegraph 11.3 is typed against @grafana/data 11.3, whose theme type names a
// component or two differently; the theme object itself is what Grafana passes it.
type FlameGraphTheme = ReturnType<ComponentProps<typeof FlameGraph>['getTheme']>;

function Panels({ flame, diff }: { flame?: DataFrame; diff?: DataFrame }) {
  const theme = createTheme({ colors: { mode: 'light' } }) as unknown as FlameGraphTheme;
  return (
    <>
      <h2>Flame graph (query type "both")</h2>
      <div className="panel" id="flamegraph">
        <FlameGraph data={flame} getTheme={() => theme} disableCollapsing />
      </div>
      <h2>Diff (baseline against comparison)</h2>
      <div className="panel" id="diff">
        <FlameGraph data={diff} getTheme={() => theme} disableCollapsing />
      </div>
    </>
  );
}

async function main() {
  const config = window.EMBER_E2E;
  const ember = datasource(config.tenant);
  const both = await ember.query(request(config, { refId: 'A', queryType: 'both' }));
  const diff = await ember.query(
    request(config, { refId: 'A', queryType: 'diff', baseline: config.baseline, comparison: config.comparison })
  );
  const exemplars = await ember.query(request(config, { refId: 'A', queryType: 'metrics', includeExemplars: true }));
  const stranger = await datasource(config.otherTenant).query(request(config, { refId: 'A', queryType: 'profile' }));

  const flame = both.data.find((f: DataFrame) => f.meta?.preferredVisualisationType === 'flamegraph');
  const series = both.data.filter((f: DataFrame) => f.name === 'series');
  const diffFrame = diff.data[0];
  window.EMBER_E2E_RESULT = {
    errors: [...errorsOf(both), ...errorsOf(diff), ...errorsOf(exemplars), ...errorsOf(stranger)],
    frames: both.data.map((f: DataFrame) => f.name),
    flame: summary(flame),
    series: {
      frames: series.length,
      points: series.reduce((n: number, f: DataFrame) => n + f.length, 0),
      sum: series.reduce(
        (s: number, f: DataFrame) => s + (f.fields[1].values as number[]).reduce((a, b) => a + b, 0),
        0
      ),
      labels: series.map((f: DataFrame) => f.fields[1].labels ?? {}),
      valueField: series[0]?.fields[1].name,
    },
    diff: { ...summary(diffFrame), meta: diffFrame?.meta?.custom },
    exemplarQueryFrames: exemplars.data.map((f: DataFrame) => f.name),
    otherTenant: summary(stranger.data[0]),
  };
  createRoot(document.getElementById('root')!).render(<Panels flame={flame} diff={diffFrame} />);
}

main().then(
  () => (document.body.dataset.state = 'ready'),
  (e) => {
    window.EMBER_E2E_RESULT = { fatal: String(e?.stack ?? e) };
    document.body.dataset.state = 'error';
  }
);
