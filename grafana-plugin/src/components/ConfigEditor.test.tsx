import { DataSourceSettings } from '@grafana/data';
import { fireEvent, render, screen } from '@testing-library/react';
import React from 'react';

import { EmberOptions, EmberSecureOptions } from '../types';
import { ConfigEditor, basicAuthValue, urlError } from './ConfigEditor';

function settings(jsonData: EmberOptions = {}, secureJsonFields: Record<string, boolean> = {}) {
  return {
    id: 1,
    uid: 'ember',
    orgId: 1,
    name: 'Ember',
    type: 'ember-datasource',
    typeName: 'Ember',
    typeLogoUrl: '',
    access: 'proxy',
    url: 'http://localhost:4040',
    user: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    jsonData,
    secureJsonFields,
    readOnly: false,
    withCredentials: false,
  } as unknown as DataSourceSettings<EmberOptions, EmberSecureOptions>;
}

describe('ConfigEditor', () => {
  it('stores the token as a secret and clears basic auth, so that one header is sent', () => {
    const onOptionsChange = jest.fn();
    render(
      <ConfigEditor options={settings({ authType: 'token' }, { basicAuth: true })} onOptionsChange={onOptionsChange} />
    );
    fireEvent.change(screen.getByPlaceholderText('token'), { target: { value: 's3cret' } });
    const saved = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonData).toEqual({ token: 's3cret', basicAuth: '' });
    expect(saved.secureJsonFields).toEqual({ token: false, basicAuth: false });
    expect(JSON.stringify(saved.jsonData)).not.toContain('s3cret');
  });

  it('stores basic auth as the base64 the Authorization header wants', () => {
    const onOptionsChange = jest.fn();
    render(
      <ConfigEditor
        options={settings({ authType: 'basic', basicAuthUser: 'grafana' })}
        onOptionsChange={onOptionsChange}
      />
    );
    fireEvent.change(screen.getByPlaceholderText('password'), { target: { value: 'pä ss' } });
    const saved = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonData.basicAuth).toBe(Buffer.from('grafana:pä ss', 'utf8').toString('base64'));
    expect(saved.secureJsonData.token).toBe('');
  });

  it('keeps the tenant in the settings Grafana sends to the browser', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByPlaceholderText('anonymous'), { target: { value: ' team-a ' } });
    expect(onOptionsChange.mock.calls[0][0].jsonData).toEqual({ tenantId: 'team-a' });
  });

  it('says what is wrong with a URL', () => {
    expect(urlError('')).toMatch(/required/);
    expect(urlError('ember:4040')).toMatch(/is not http: or https:/);
    expect(urlError('not a url')).toMatch(/is not a URL/);
    expect(urlError('http://ember:4040')).toBeUndefined();
    expect(basicAuthValue('a', 'b')).toBe('YTpi');
  });
});
