import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, RadioButtonGroup, SecretInput, Stack, Text } from '@grafana/ui';
import React, { useState } from 'react';

import { AuthType, EmberOptions, EmberSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<EmberOptions, EmberSecureOptions>;

const LABEL_WIDTH = 20;

const AUTH_TYPES: Array<{ label: string; value: AuthType }> = [
  { label: 'None', value: 'none' },
  { label: 'Bearer token', value: 'token' },
  { label: 'Basic auth', value: 'basic' },
];

/** Returns `base64(user:password)` of the UTF-8 bytes, as `Authorization: Basic` wants it. */
export function basicAuthValue(user: string, password: string): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = '';
  bytes.forEach((b) => (binary += String.fromCharCode(b)));
  return btoa(binary);
}

/** Returns whether a URL is one Grafana's proxy can call: http(s) with a host. */
export function urlError(url: string): string | undefined {
  if (!url.trim()) {
    return 'Ember URL is required, e.g. http://localhost:4040';
  }
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      return `${u.protocol} is not http: or https:`;
    }
    return undefined;
  } catch {
    return `"${url}" is not a URL: write it like http://ember:4040`;
  }
}

/**
 * The datasource settings: Ember's URL (proxied by Grafana's server), the tenant, and
 * credentials that stay encrypted in Grafana and are added by the proxy's routes.
 */
export function ConfigEditor(props: Props) {
  const { options, onOptionsChange } = props;
  const jsonData = options.jsonData ?? {};
  const secureFields = options.secureJsonFields ?? {};
  const authType: AuthType = jsonData.authType ?? 'none';
  // The password is never read back: it lives here while it is typed.
  const [password, setPassword] = useState('');

  const setJson = (patch: Partial<EmberOptions>) =>
    onOptionsChange({ ...options, jsonData: { ...jsonData, ...patch } });

  /**
   * Sets some secrets and clears the others, so that the route adds exactly the one set;
   * Grafana then stores all of them anew.
   */
  const setSecrets = (patch: Partial<EmberSecureOptions>, json: Partial<EmberOptions> = {}) =>
    onOptionsChange({
      ...options,
      jsonData: { ...jsonData, ...json },
      secureJsonData: { token: '', basicAuth: '', ...patch },
      secureJsonFields: { ...secureFields, token: false, basicAuth: false },
    });

  const onAuthType = (value: AuthType) => {
    setPassword('');
    setSecrets({}, { authType: value });
  };

  const url = options.url ?? '';
  const error = url ? urlError(url) : undefined;

  return (
    <Stack direction="column" gap={1}>
      <Text element="h3">Connection</Text>
      <InlineField
        label="URL"
        labelWidth={LABEL_WIDTH}
        interactive
        tooltip="Ember's address as Grafana's server reaches it, e.g. http://ember:4040 (the server's root, no path)"
        invalid={Boolean(error)}
        error={error}
      >
        <Input
          id="config-url"
          width={48}
          value={url}
          placeholder="http://localhost:4040"
          onChange={(e) => onOptionsChange({ ...options, url: e.currentTarget.value.trim() })}
        />
      </InlineField>
      <InlineField
        label="Tenant"
        labelWidth={LABEL_WIDTH}
        tooltip="Sent as X-Scope-OrgID when Ember runs with -auth.multitenancy-enabled=true; empty otherwise"
      >
        <Input
          id="config-tenant"
          width={48}
          value={jsonData.tenantId ?? ''}
          placeholder="anonymous"
          onChange={(e) => setJson({ tenantId: e.currentTarget.value.trim() || undefined })}
        />
      </InlineField>

      <Text element="h3">Authentication</Text>
      <InlineField label="Credentials" labelWidth={LABEL_WIDTH}>
        <RadioButtonGroup options={AUTH_TYPES} value={authType} onChange={onAuthType} />
      </InlineField>
      {authType === 'token' && (
        <InlineField
          label="Token"
          labelWidth={LABEL_WIDTH}
          tooltip="Sent as Authorization: Bearer <token> by Grafana's server"
        >
          <SecretInput
            id="config-token"
            width={48}
            isConfigured={Boolean(secureFields.token)}
            value={options.secureJsonData?.token ?? ''}
            placeholder="token"
            onReset={() => setSecrets({ token: '' })}
            onChange={(e) => setSecrets({ token: e.currentTarget.value })}
          />
        </InlineField>
      )}
      {authType === 'basic' && (
        <>
          <InlineField label="User" labelWidth={LABEL_WIDTH}>
            <Input
              id="config-basic-user"
              width={48}
              value={jsonData.basicAuthUser ?? ''}
              onChange={(e) => {
                const user = e.currentTarget.value;
                // The stored header holds the old user: it needs the password again.
                setSecrets(password ? { basicAuth: basicAuthValue(user, password) } : { basicAuth: '' }, {
                  basicAuthUser: user,
                });
              }}
            />
          </InlineField>
          <InlineField
            label="Password"
            labelWidth={LABEL_WIDTH}
            tooltip="Sent as Authorization: Basic by Grafana's server"
          >
            <SecretInput
              id="config-basic-password"
              width={48}
              isConfigured={Boolean(secureFields.basicAuth)}
              value={password}
              placeholder="password"
              onReset={() => {
                setPassword('');
                setSecrets({ basicAuth: '' });
              }}
              onChange={(e) => {
                const value = e.currentTarget.value;
                setPassword(value);
                setSecrets({ basicAuth: basicAuthValue(jsonData.basicAuthUser ?? '', value) });
              }}
            />
          </InlineField>
        </>
      )}

      <Text element="h3">Queries and links</Text>
      <InlineField
        label="Minimum step"
        labelWidth={LABEL_WIDTH}
        tooltip="The smallest step of a time series, e.g. 15s (the default) or 1m"
      >
        <Input
          id="config-min-step"
          width={16}
          value={jsonData.minStep ?? ''}
          placeholder="15s"
          onChange={(e) => setJson({ minStep: e.currentTarget.value.trim() || undefined })}
        />
      </InlineField>
      <InlineField
        label="Ember UI URL"
        labelWidth={LABEL_WIDTH}
        tooltip="Ember's web UI as your browser reaches it, for the 'Open in Ember' links; empty: no links"
      >
        <Input
          id="config-ui-url"
          width={48}
          value={jsonData.uiUrl ?? ''}
          placeholder={url || 'http://localhost:4040'}
          onChange={(e) => setJson({ uiUrl: e.currentTarget.value.trim() || undefined })}
        />
      </InlineField>
    </Stack>
  );
}
