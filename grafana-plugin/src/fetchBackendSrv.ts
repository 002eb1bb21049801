// Grafana's BackendSrv over a plain `fetch`, for running the datasource outside Grafana:
// in the browser test page against a real Ember, and in unit tests. Inside Grafana the
// real one goes through the datasource proxy instead.

import { BackendSrv, BackendSrvRequest, FetchError, FetchResponse } from '@grafana/runtime';
import { Observable, from } from 'rxjs';

type Fetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string }
) => Promise<Response>;

/**
 * Returns a BackendSrv whose `fetch` sends the request with `fetchImpl` and fails, as
 * Grafana's does, with a `FetchError` (status, parsed body) on a status that is not 2xx.
 */
export function fetchBackendSrv(fetchImpl: Fetch = (url, init) => fetch(url, init)): BackendSrv {
  const send = async <T>(options: BackendSrvRequest): Promise<FetchResponse<T>> => {
    const response = await fetchImpl(options.url, {
      method: options.method ?? 'GET',
      headers: (options.headers ?? {}) as Record<string, string>,
      body: options.data === undefined ? undefined : JSON.stringify(options.data),
    });
    const text = await response.text();
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      // Not JSON (a proxy's error page): keep the text.
    }
    const base = {
      status: response.status,
      statusText: response.statusText,
      ok: response.ok,
      headers: response.headers,
      redirected: response.redirected,
      type: response.type,
      url: response.url,
      config: options,
    };
    if (!response.ok) {
      const error: FetchError = { ...base, data, isHandled: false };
      throw error;
    }
    return { ...base, data: data as T };
  };
  const unsupported = () => {
    throw new Error('only fetch is bound outside Grafana');
  };
  return {
    fetch: <T>(options: BackendSrvRequest): Observable<FetchResponse<T>> => from(send<T>(options)),
    get: unsupported,
    delete: unsupported,
    post: unsupported,
    patch: unsupported,
    put: unsupported,
    request: unsupported,
    datasourceRequest: unsupported,
    resolveCancelerIfExists: unsupported,
    chunked: unsupported,
  } as unknown as BackendSrv;
}
