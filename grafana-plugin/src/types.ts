import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** What a query asks for: Grafana Pyroscope's three kinds, plus a diff of two selections. */
export type QueryType = 'profile' | 'metrics' | 'both' | 'diff';

/** How the time series aggregates the profiles in one step. */
export type Aggregation = 'sum' | 'average';

/** One side of a diff: a selector and a time range; empty fields mean the query's own. */
export interface DiffSide {
  /** A label selector such as `{service_name="api"}`; empty means the query's selector. */
  labelSelector?: string;
  /** Grafana time expressions (`now-2h`, an ISO time); both empty means half of the panel range. */
  from?: string;
  to?: string;
}

/**
 * A panel query. The field names are Grafana Pyroscope's where it has one, so that
 * dashboards move between the two datasources with few edits.
 */
export interface EmberQuery extends DataQuery {
  queryType: QueryType;
  /** `name:sample_type:sample_unit:period_type:period_unit`. */
  profileTypeId: string;
  labelSelector: string;
  /** Label names the time series is grouped by. */
  groupBy: string[];
  /** Seconds between points; empty means Grafana's interval, at least the datasource's minimum step. */
  step?: number;
  aggregation?: Aggregation;
  /** The flame graph is cut to this many nodes (Ember's default 8192 when empty). */
  maxNodes?: number;
  /** Span IDs: the flame graph of those spans only (Pyroscope's `SelectMergeSpanProfile`). */
  spanSelector?: string[];
  /** Asks for exemplars (individual profiles) with the time series. */
  includeExemplars?: boolean;
  /** Only with `queryType: 'diff'`: the baseline (left) and comparison (right). */
  baseline?: DiffSide;
  comparison?: DiffSide;
}

export const DEFAULT_QUERY: Partial<EmberQuery> = {
  queryType: 'both',
  labelSelector: '{}',
  groupBy: [],
};

/** Where the datasource keeps its settings (visible to every viewer: nothing secret). */
export interface EmberOptions extends DataSourceJsonData {
  /** Sent as `X-Scope-OrgID` when Ember runs with multi-tenancy. */
  tenantId?: string;
  /** Which credentials the proxy adds; the secrets are in `EmberSecureOptions`. */
  authType?: AuthType;
  /** The basic-auth user, kept to show it on the config page again. */
  basicAuthUser?: string;
  /** The smallest step of a time series, e.g. `15s`. */
  minStep?: string;
  /** Ember's UI as the browser reaches it, for the "open in Ember" links. */
  uiUrl?: string;
}

export type AuthType = 'none' | 'token' | 'basic';

/**
 * Secrets, kept encrypted by Grafana and added by its datasource proxy (`routes` in
 * plugin.json): the browser never reads them back.
 */
export interface EmberSecureOptions {
  /** A bearer token. */
  token?: string;
  /** `base64(user:password)`, as the `Authorization: Basic` header wants it. */
  basicAuth?: string;
}

/** Template variable queries. */
export type VariableQuery =
  | { refId: string; type: 'profileType' }
  | { refId: string; type: 'label'; profileTypeId?: string; labelSelector?: string }
  | { refId: string; type: 'labelValue'; profileTypeId?: string; labelSelector?: string; labelName: string };

// --- Ember's Connect JSON (protojson: int64 may arrive as strings) ----------------

export interface ProfileType {
  ID: string;
  name: string;
  sampleType: string;
  sampleUnit: string;
  periodType: string;
  periodUnit: string;
}

export interface LabelPair {
  name: string;
  value: string;
}

/** `querier.v1.FlameGraph`: `levels[d].values` is a flat list of `[x, total, self, name]`. */
export interface FlameGraphWire {
  names?: string[];
  levels?: Array<{ values?: Array<number | string> }>;
  total?: number | string;
  maxSelf?: number | string;
}

/** `querier.v1.FlameGraphDiff`: 7-tuples `[lx, ltotal, lself, rx, rtotal, rself, name]`. */
export interface FlameGraphDiffWire extends FlameGraphWire {
  leftTicks?: number | string;
  rightTicks?: number | string;
}

export interface ExemplarWire {
  timestamp?: number | string;
  profileId?: string;
  spanId?: string;
  value?: number | string;
  labels?: LabelPair[];
}

export interface PointWire {
  value?: number;
  timestamp?: number | string;
  annotations?: Array<{ key?: string; value?: string }>;
  exemplars?: ExemplarWire[];
}

export interface SeriesWire {
  labels?: LabelPair[];
  points?: PointWire[];
}
