// plugin.json's proxy route: the credentials saved on the config page reach Ember as an
// Authorization header, added by Grafana's server, for every call the datasource makes.

import { QUERIER_PATH } from './datasource';
import pluginJson from './plugin.json';

type Data = { JsonData: Record<string, unknown>; SecureJsonData: Record<string, string> };

/**
 * Renders the subset of Go's text/template that the route uses, as Grafana's proxy does
 * (`interpolateString` with `.JsonData` and `.SecureJsonData`): `{{ .A.b }}`, and
 * `{{ if .A.b }}..{{ else if .A.c }}..{{ else }}..{{ end }}`, where a missing or empty
 * value is false and prints as nothing (a map[string]string's zero value).
 */
function render(template: string, data: Data): string {
  const tokens = template.split(/(\{\{.*?\}\})/).filter((t) => t !== '');
  const value = (path: string) => {
    const [, group, key] = /^\.(\w+)\.(\w+)$/.exec(path.trim()) ?? fail(`unsupported template path ${path}`);
    return String((data as unknown as Record<string, Record<string, unknown>>)[group]?.[key] ?? '');
  };
  let out = '';
  // Each open `if`: whether a branch was taken, and whether the current one prints.
  const stack: Array<{ taken: boolean; on: boolean }> = [];
  const printing = () => stack.every((s) => s.on);
  for (const token of tokens) {
    const action = /^\{\{\s*(.*?)\s*\}\}$/.exec(token)?.[1];
    if (action === undefined) {
      out += printing() ? token : '';
    } else if (action.startsWith('if ')) {
      const on = value(action.slice(3)) !== '';
      stack.push({ taken: on, on });
    } else if (action.startsWith('else if ')) {
      const top = stack[stack.length - 1];
      top.on = !top.taken && value(action.slice(8)) !== '';
      top.taken ||= top.on;
    } else if (action === 'else') {
      const top = stack[stack.length - 1];
      top.on = !top.taken;
      top.taken = true;
    } else if (action === 'end') {
      stack.pop() ?? fail('unbalanced end');
    } else {
      out += printing() ? value(action) : '';
    }
  }
  if (stack.length) {
    fail('unclosed if');
  }
  return out;
}

function fail(message: string): never {
  throw new Error(message);
}

/** Returns the headers the proxy adds to a call of `path`, or undefined when no route matches it. */
function proxyHeaders(path: string, method: string, data: Data): Record<string, string> | undefined {
  // Grafana takes the first route whose path is a prefix of the proxied path and whose method fits.
  const route = pluginJson.routes.find(
    (r) => path.startsWith(r.path) && (!r.method || r.method === '*' || r.method === method)
  );
  return route && Object.fromEntries(route.headers.map((h) => [h.name, render(h.content, data)]));
}

describe('plugin.json', () => {
  it('is the Ember datasource', () => {
    expect(pluginJson).toMatchObject({ id: 'ember-datasource', type: 'datasource', metrics: true, annotations: true });
    expect(pluginJson.dependencies.grafanaDependency).toMatch(/^>=\d+\.\d+\.\d+$/);
  });

  const methods = ['ProfileTypes', 'LabelNames', 'LabelValues', 'SelectMergeStacktraces', 'SelectSeries', 'Diff'];

  it.each(methods)('adds a bearer token to %s', (method) => {
    const headers = proxyHeaders(`${QUERIER_PATH}/${method}`, 'POST', {
      JsonData: { authType: 'token' },
      SecureJsonData: { token: 's3cret' },
    });
    expect(headers).toEqual({ Authorization: 'Bearer s3cret' });
  });

  it('adds basic auth as the config page stores it', () => {
    const headers = proxyHeaders(`${QUERIER_PATH}/SelectSeries`, 'POST', {
      JsonData: { authType: 'basic', basicAuthUser: 'grafana' },
      SecureJsonData: { token: '', basicAuth: btoa('grafana:pw') },
    });
    expect(headers).toEqual({ Authorization: `Basic ${btoa('grafana:pw')}` });
  });

  it('adds an empty Authorization without credentials', () => {
    expect(proxyHeaders(`${QUERIER_PATH}/Diff`, 'POST', { JsonData: {}, SecureJsonData: {} })).toEqual({
      Authorization: '',
    });
  });

  it('matches no other path, so that nothing else gets the credentials', () => {
    expect(
      proxyHeaders('push.v1.PusherService/Push', 'POST', { JsonData: {}, SecureJsonData: { token: 't' } })
    ).toBeUndefined();
  });

  it('renders templates as Go does, checked on the cases above', () => {
    const data = { JsonData: {}, SecureJsonData: { a: '1' } };
    expect(
      render('{{ if .SecureJsonData.b }}B{{ else if .SecureJsonData.a }}A{{ .SecureJsonData.a }}{{ end }}', data)
    ).toBe('A1');
    expect(render('x{{ if .SecureJsonData.b }}B{{ else }}E{{ end }}y', data)).toBe('xEy');
    expect(() => render('{{ if .SecureJsonData.a }}', data)).toThrow(/unclosed/);
  });
});
