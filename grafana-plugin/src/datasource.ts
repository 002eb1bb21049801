import {
  AdHocVariableFilter,
  CoreApp,
  DataFrame,
  DataLink,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceApi,
  DataSourceGetTagKeysOptions,
  DataSourceGetTagValuesOptions,
  DataSourceInstanceSettings,
  MetricFindValue,
  ScopedVars,
  TestDataSourceResponse,
  TimeRange,
  dateMath,
  rangeUtil,
} from '@grafana/data';
import { FetchError, getBackendSrv, getTemplateSrv, isFetchError, TemplateSrv } from '@grafana/runtime';
import { lastValueFrom } from 'rxjs';

import { diffFrame, flameGraphFrame, seriesFrames } from './frames';
import { DiffRanges, emberUiUrl } from './links';
import { Matcher, adHocOperator, formatSelector, parseSelector, withMatchers } from './selector';
import {
  DEFAULT_QUERY,
  DiffSide,
  EmberOptions,
  EmberQuery,
  FlameGraphDiffWire,
  FlameGraphWire,
  ProfileType,
  SeriesWire,
} from './types';
import { EmberVariableSupport } from './variables';

/** Every querier method is under this path, which is also the proxy route that adds credentials. */
export const QUERIER_PATH = 'querier.v1.QuerierService';

/** The smallest step when the datasource sets none, as Grafana's Pyroscope datasource. */
const DEFAULT_MIN_STEP_SECONDS = 15;

/** An error Ember answered, with its Connect code and HTTP status. */
export class EmberError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string
  ) {
    super(message);
    this.name = 'EmberError';
  }
}

export class EmberDataSource extends DataSourceApi<EmberQuery, EmberOptions> {
  readonly url: string;
  readonly tenantId: string;
  readonly minStepSeconds: number;
  readonly uiUrl?: string;

  constructor(
    instanceSettings: DataSourceInstanceSettings<EmberOptions>,
    private readonly templateSrv: TemplateSrv = getTemplateSrv()
  ) {
    super(instanceSettings);
    const json = instanceSettings.jsonData ?? {};
    this.url = (instanceSettings.url ?? '').replace(/\/+$/, '');
    this.tenantId = (json.tenantId ?? '').trim();
    this.minStepSeconds = json.minStep ? rangeUtil.intervalToSeconds(json.minStep) : DEFAULT_MIN_STEP_SECONDS;
    // Links need a URL the browser reaches: the proxy URL is not one of them.
    const ui = (json.uiUrl ?? '').trim() || (/^https?:\/\//.test(this.url) ? this.url : '');
    this.uiUrl = ui ? ui.replace(/\/+$/, '') : undefined;
    this.variables = new EmberVariableSupport(this);
    this.annotations = {};
  }

  /**
   * Calls a querier method with a protojson body through Grafana's backend service
   * (the datasource proxy, which adds the credentials); throws an `EmberError` with
   * Ember's own message.
   */
  async call<T>(method: string, body: object): Promise<T> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (this.tenantId) {
      headers['X-Scope-OrgID'] = this.tenantId;
    }
    try {
      const response = await lastValueFrom(
        getBackendSrv().fetch<T>({
          url: `${this.url}/${QUERIER_PATH}/${method}`,
          method: 'POST',
          data: body,
          headers,
          showErrorAlert: false,
        })
      );
      return response.data;
    } catch (e) {
      throw toEmberError(method, e);
    }
  }

  getDefaultQuery(_app: CoreApp): Partial<EmberQuery> {
    return DEFAULT_QUERY;
  }

  filterQuery(query: EmberQuery): boolean {
    return !query.hide && Boolean(query.profileTypeId);
  }

  async query(request: DataQueryRequest<EmberQuery>): Promise<DataQueryResponse> {
    const targets = request.targets.filter((t) => this.filterQuery(t));
    const data: DataFrame[] = [];
    const errors: Array<{ refId: string; message: string }> = [];
    await Promise.all(
      targets.map(async (target) => {
        try {
          const query = this.applyTemplateVariables(target, request.scopedVars, request.filters);
          data.push(...(await this.runQuery(query, request)));
        } catch (e) {
          errors.push({ refId: target.refId, message: e instanceof Error ? e.message : String(e) });
        }
      })
    );
    // Frames in the order of the targets, each target's own order kept.
    const order = new Map(targets.map((t, i) => [t.refId, i]));
    data.sort((a, b) => (order.get(a.refId ?? '') ?? 0) - (order.get(b.refId ?? '') ?? 0));
    return { data, errors: errors.length ? errors : undefined };
  }

  private async runQuery(query: EmberQuery, request: DataQueryRequest<EmberQuery>): Promise<DataFrame[]> {
    const start = request.range.from.valueOf();
    const end = request.range.to.valueOf();
    const selector = query.labelSelector?.trim() || '{}';
    const type = query.queryType ?? 'both';
    const base = { refId: query.refId, profileTypeId: query.profileTypeId };
    if (type === 'diff') {
      const ranges = diffRanges(query, request.range);
      const wire = await this.call<{ flamegraph?: FlameGraphDiffWire }>('Diff', {
        left: this.stacktracesRequest(query, ranges.baseline.selector, ranges.baseline.from, ranges.baseline.to),
        right: this.stacktracesRequest(query, ranges.comparison.selector, ranges.comparison.from, ranges.comparison.to),
      });
      return [diffFrame(wire.flamegraph ?? {}, { ...base, links: this.links(query, request.range, ranges) })];
    }
    // Dashboards draw one kind per panel: only Explore shows both at once (as with Grafana's Pyroscope).
    const wantProfile = type === 'profile' || type === 'both';
    const wantSeries = type === 'metrics' || (type === 'both' && request.app === CoreApp.Explore);
    const links = this.links(query, request.range);
    const [profile, series] = await Promise.all([
      wantProfile ? this.flameGraph(query, selector, start, end) : undefined,
      wantSeries ? this.series(query, selector, start, end, request.intervalMs) : undefined,
    ]);
    const frames: DataFrame[] = [];
    if (profile) {
      frames.push(flameGraphFrame(profile, { ...base, links }));
    }
    if (series) {
      frames.push(...seriesFrames(series, { ...base, links }));
    }
    return frames;
  }

  private stacktracesRequest(query: EmberQuery, labelSelector: string, start: number, end: number) {
    return {
      profileTypeID: query.profileTypeId,
      labelSelector,
      start: String(start),
      end: String(end),
      ...(query.maxNodes ? { maxNodes: String(query.maxNodes) } : {}),
    };
  }

  /** The merged flame graph; with a span selector, of those spans only (`SelectMergeSpanProfile`). */
  async flameGraph(query: EmberQuery, labelSelector: string, start: number, end: number): Promise<FlameGraphWire> {
    const request = this.stacktracesRequest(query, labelSelector, start, end);
    const spans = (query.spanSelector ?? []).filter((s) => s.trim() !== '');
    if (spans.length) {
      const r = await this.call<{ flamegraph?: FlameGraphWire }>('SelectMergeSpanProfile', {
        ...request,
        spanSelector: spans,
      });
      return r.flamegraph ?? {};
    }
    const r = await this.call<{ flamegraph?: FlameGraphWire }>('SelectMergeStacktraces', request);
    return r.flamegraph ?? {};
  }

  /** The time series, at the query's step or else Grafana's interval (never below the minimum step). */
  async series(query: EmberQuery, labelSelector: string, start: number, end: number, intervalMs?: number) {
    const step = query.step && query.step > 0 ? query.step : Math.max((intervalMs ?? 0) / 1000, this.minStepSeconds);
    const r = await this.call<{ series?: SeriesWire[] }>('SelectSeries', {
      profileTypeID: query.profileTypeId,
      labelSelector,
      start: String(start),
      end: String(end),
      groupBy: query.groupBy ?? [],
      step,
      ...(query.aggregation === 'average' ? { aggregation: 'TIME_SERIES_AGGREGATION_TYPE_AVERAGE' } : {}),
      ...(query.includeExemplars ? { exemplarType: 'EXEMPLAR_TYPE_INDIVIDUAL' } : {}),
    });
    return r.series ?? [];
  }

  /** Returns `text` with template variables replaced (several values as a regex alternation). */
  interpolate(text: string, scopedVars?: ScopedVars): string {
    return this.templateSrv.replace(text, scopedVars, formatVariableValue);
  }

  /** Returns the query with template variables replaced and ad hoc filters added to each selector. */
  applyTemplateVariables(query: EmberQuery, scopedVars: ScopedVars, filters?: AdHocVariableFilter[]): EmberQuery {
    const replace = (text: string | undefined) => (text === undefined ? undefined : this.interpolate(text, scopedVars));
    const extra = filtersToMatchers(filters ?? []);
    const selector = (text: string | undefined) => withMatchers(replace(text) ?? '{}', extra);
    const side = (s: DiffSide | undefined): DiffSide | undefined =>
      s && {
        ...s,
        labelSelector: s.labelSelector?.trim() ? selector(s.labelSelector) : undefined,
        from: replace(s.from),
        to: replace(s.to),
      };
    return {
      ...query,
      profileTypeId: replace(query.profileTypeId) ?? '',
      labelSelector: selector(query.labelSelector),
      groupBy: (query.groupBy ?? []).flatMap((g) => (replace(g) ?? '').split(',')).filter(Boolean),
      spanSelector: query.spanSelector?.map((s) => replace(s) ?? ''),
      baseline: side(query.baseline),
      comparison: side(query.comparison),
    };
  }

  interpolateVariablesInQueries(queries: EmberQuery[], scopedVars: ScopedVars, filters?: AdHocVariableFilter[]) {
    return queries.map((q) => this.applyTemplateVariables(q, scopedVars, filters));
  }

  getQueryDisplayText(query: EmberQuery): string {
    return `${query.profileTypeId}${query.labelSelector ?? ''}`;
  }

  // --- metadata: the query editor, variables and ad hoc filters -------------------

  /** Returns the profile types with data in the range (the last 24 hours without one). */
  async profileTypes(range?: TimeRange): Promise<ProfileType[]> {
    const { start, end } = rangeMs(range);
    const r = await this.call<{ profileTypes?: ProfileType[] }>('ProfileTypes', { start, end });
    return r.profileTypes ?? [];
  }

  /** Returns the label names of the series that `selector` matches (of one profile type, when given). */
  async labelNames(selector: string, range?: TimeRange, profileTypeId?: string): Promise<string[]> {
    const { start, end } = rangeMs(range);
    const r = await this.call<{ names?: string[] }>('LabelNames', {
      matchers: [scopedSelector(selector, profileTypeId)],
      start,
      end,
    });
    return (r.names ?? []).filter((n) => !n.startsWith('__'));
  }

  /** Returns the values of label `name` among the series that `selector` matches. */
  async labelValues(name: string, selector: string, range?: TimeRange, profileTypeId?: string): Promise<string[]> {
    const { start, end } = rangeMs(range);
    const r = await this.call<{ names?: string[] }>('LabelValues', {
      name,
      matchers: [scopedSelector(selector, profileTypeId)],
      start,
      end,
    });
    return r.names ?? [];
  }

  async getTagKeys(options?: DataSourceGetTagKeysOptions<EmberQuery>): Promise<MetricFindValue[]> {
    const selector = formatSelector(filtersToMatchers(options?.filters ?? []));
    return (await this.labelNames(selector, options?.timeRange)).map((text) => ({ text }));
  }

  async getTagValues(options: DataSourceGetTagValuesOptions<EmberQuery>): Promise<MetricFindValue[]> {
    const others = (options.filters ?? []).filter((f) => f.key !== options.key);
    const selector = formatSelector(filtersToMatchers(others));
    return (await this.labelValues(options.key, selector, options.timeRange)).map((text) => ({ text }));
  }

  // --- links and the health check -------------------------------------------------

  /** Returns the URL of Ember's UI showing the query over the range, or undefined without a UI URL. */
  uiLink(query: EmberQuery, range: TimeRange): string | undefined {
    if (!this.uiUrl || !query.profileTypeId) {
      return undefined;
    }
    const diff = query.queryType === 'diff' ? diffRanges(query, range) : undefined;
    return emberUiUrl(this.uiUrl, {
      profileTypeId: query.profileTypeId,
      labelSelector: query.labelSelector?.trim() || '{}',
      from: range.from.valueOf(),
      to: range.to.valueOf(),
      diff,
    });
  }

  private links(query: EmberQuery, range: TimeRange, diff?: DiffRanges): DataLink[] | undefined {
    if (!this.uiUrl) {
      return undefined;
    }
    const url = emberUiUrl(this.uiUrl, {
      profileTypeId: query.profileTypeId,
      labelSelector: query.labelSelector?.trim() || '{}',
      from: range.from.valueOf(),
      to: range.to.valueOf(),
      diff,
    });
    return [{ title: 'Open in Ember', url, targetBlank: true }];
  }

  /**
   * "Save & test": Grafana's Pyroscope health check (`ProfileTypes` over 1970), then
   * what Ember holds over the last day; a failure says what to fix.
   */
  async testDatasource(): Promise<TestDataSourceResponse> {
    try {
      await this.call('ProfileTypes', { start: '1000', end: '4000' });
      const types = await this.profileTypes();
      const tenant = this.tenantId ? ` for tenant "${this.tenantId}"` : '';
      return {
        status: 'success',
        message: types.length
          ? `Ember answered${tenant}: ${types.length} profile type${types.length === 1 ? '' : 's'} in the last 24 hours.`
          : `Ember answered${tenant}, but holds no profiles from the last 24 hours: point an SDK or ember -target=agent at it.`,
      };
    } catch (e) {
      return { status: 'error', message: healthMessage(e, this.tenantId) };
    }
  }
}

/** Returns `start`/`end` in unix ms (as protojson strings) of a range, else of the last 24 hours. */
function rangeMs(range?: TimeRange): { start: string; end: string } {
  const end = range ? range.to.valueOf() : Date.now();
  const start = range ? range.from.valueOf() : end - 24 * 3600 * 1000;
  return { start: String(start), end: String(end) };
}

/** Narrows a selector to one profile type, as Ember's `__profile_type__` label does. */
function scopedSelector(selector: string, profileTypeId?: string): string {
  const own = selector.trim() || '{}';
  if (!profileTypeId) {
    return own;
  }
  try {
    return formatSelector([{ name: '__profile_type__', op: '=', value: profileTypeId }, ...parseSelector(own)]);
  } catch {
    return own;
  }
}

/** Returns ad hoc filters as matchers, leaving out operators Ember cannot match with. */
export function filtersToMatchers(filters: AdHocVariableFilter[]): Matcher[] {
  return filters.flatMap((f) => {
    const op = adHocOperator(f.operator);
    return op && f.key ? [{ name: f.key, op, value: f.value }] : [];
  });
}

/**
 * Formats a variable's value inside a selector: one value as it is, several as a regex
 * alternation (for `=~`), as Grafana's Prometheus datasource does. Each value's regex
 * characters are escaped with a backslash that is itself escaped, since the selector
 * holds it inside a double-quoted string.
 */
export function formatVariableValue(value: unknown): string {
  if (Array.isArray(value)) {
    return value.length === 1 ? String(value[0]) : `(${value.map((v) => escapeRegex(String(v))).join('|')})`;
  }
  return String(value ?? '');
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$*+?.()|[\]{}]/g, '\\\\$&');
}

/**
 * Returns both sides of a diff: each side's own selector or the query's, its own range
 * or, with none, the first and second half of the panel range when both sides select
 * the same series (a before/after comparison), the whole range when they differ.
 */
export function diffRanges(query: EmberQuery, range: TimeRange): DiffRanges {
  const selector = query.labelSelector?.trim() || '{}';
  const left = query.baseline?.labelSelector?.trim() || selector;
  const right = query.comparison?.labelSelector?.trim() || selector;
  const from = range.from.valueOf();
  const to = range.to.valueOf();
  const mid = Math.round((from + to) / 2);
  const halves = left === right;
  const side = (s: DiffSide | undefined, a: number, b: number, name: string) => {
    if (!s?.from?.trim() && !s?.to?.trim()) {
      return { from: a, to: b };
    }
    const parse = (text: string | undefined, fallback: number, roundUp: boolean) => {
      if (!text?.trim()) {
        return fallback;
      }
      const t = dateMath.toDateTime(text.trim(), { roundUp });
      if (!t?.isValid()) {
        throw new Error(`the ${name} time "${text}" is not a time: use now-1h, now-7d/d or 2024-01-31T10:00:00Z`);
      }
      return t.valueOf();
    };
    return { from: parse(s.from, from, false), to: parse(s.to, to, true) };
  };
  return {
    baseline: { selector: left, ...side(query.baseline, from, halves ? mid : to, 'baseline') },
    comparison: { selector: right, ...side(query.comparison, halves ? mid : from, to, 'comparison') },
  };
}

/** Returns the `EmberError` of a failed fetch: Ember's Connect message, else the HTTP status. */
export function toEmberError(method: string, e: unknown): EmberError {
  if (e instanceof EmberError) {
    return e;
  }
  if (isFetchError(e)) {
    const err = e as FetchError<{ code?: string; message?: string }>;
    const message = err.data?.message || err.statusText || `HTTP ${err.status}`;
    return new EmberError(`${method}: ${message}`, err.status, err.data?.code);
  }
  return new EmberError(`${method}: ${e instanceof Error ? e.message : String(e)}`, 0);
}

/** Says what is wrong when the health check fails, and what to do about it. */
export function healthMessage(e: unknown, tenantId: string): string {
  const err = toEmberError('ProfileTypes', e);
  switch (err.status) {
    case 0:
    case 502:
    case 503:
    case 504:
      return `Grafana cannot reach Ember (${err.message}). Check the URL (e.g. http://ember:4040, as Grafana's server reaches it) and that Ember answers GET /ready.`;
    case 401:
      return `Ember refused the credentials (401: ${err.message}). Check the token, or the user and password.`;
    case 403:
      return `Ember does not let these credentials read tenant "${tenantId}" (403: ${err.message}). Check the tenant or the token's tenants.`;
    case 404:
      return `The URL answered 404 for ${QUERIER_PATH}: it is not an Ember or Pyroscope server, or it has a path after the port. Use the server's root URL, e.g. http://ember:4040.`;
    default:
      if (err.status === 400 && /tenant|org ?id/i.test(err.message) && !tenantId) {
        return `Ember runs with multi-tenancy and needs a tenant (${err.message}). Set the tenant.`;
      }
      return `Ember answered ${err.status}: ${err.message}`;
  }
}
