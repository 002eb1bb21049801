// Shared by the unit tests: a datasource whose backend service records each call and
// answers it as Ember would, and the time range of the tests.

import { DataSourceInstanceSettings, PluginType, ScopedVars, TimeRange, dateTime } from '@grafana/data';
import { TemplateSrv, setBackendSrv } from '@grafana/runtime';

import { EmberDataSource } from './datasource';
import { fetchBackendSrv } from './fetchBackendSrv';
import { EmberOptions } from './types';

export const CPU = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
export const FROM = 1_700_000_000_000;
export const TO = FROM + 3_600_000;

export interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/** Records every call; answers each method with `answers[method]` (status 200) or a Connect error. */
export function recordCalls(answers: Record<string, unknown> = {}, status = 200) {
  const calls: Call[] = [];
  setBackendSrv(
    fetchBackendSrv(async (url, init) => {
      calls.push({ url, method: init.method, headers: init.headers, body: JSON.parse(init.body ?? '{}') });
      const method = url.split('/').pop()!;
      const body = status === 200 ? (answers[method] ?? {}) : { code: 'invalid_argument', message: 'bad selector' };
      const text = JSON.stringify(body);
      // jsdom has no Response: this is the part of one that the backend service reads.
      return { status, ok: status < 300, statusText: '', text: async () => text } as unknown as Response;
    })
  );
  return calls;
}

/** Replaces `$name` from `vars`, then from the scoped variables, with the datasource's formatter. */
export function templateSrv(vars: Record<string, string | string[]> = {}): TemplateSrv {
  return {
    getVariables: () => [],
    containsTemplate: (t?: string) => Boolean(t?.includes('$')),
    updateTimeRange: () => undefined,
    replace: (target?: string, scoped?: ScopedVars, format?: string | Function) =>
      (target ?? '').replace(/\$(\w+)/g, (all, name: string) => {
        const value = scoped?.[name]?.value ?? vars[name];
        if (value === undefined) {
          return all;
        }
        return typeof format === 'function' ? format(value) : String(value);
      }),
  };
}

export function datasource(
  jsonData: EmberOptions = {},
  vars: Record<string, string | string[]> = {},
  url = '/api/datasources/proxy/uid/ember'
) {
  const settings = {
    id: 1,
    uid: 'ember',
    type: 'ember-datasource',
    name: 'Ember',
    url,
    access: 'proxy',
    jsonData,
    readOnly: false,
    meta: { id: 'ember-datasource', name: 'Ember', type: PluginType.datasource, module: '', baseUrl: '', info: {} },
  } as unknown as DataSourceInstanceSettings<EmberOptions>;
  return new EmberDataSource(settings, templateSrv(vars));
}

export const range: TimeRange = { from: dateTime(FROM), to: dateTime(TO), raw: { from: 'now-1h', to: 'now' } };
