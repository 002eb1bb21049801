import { act, fireEvent, render, screen } from '@testing-library/react';
import React from 'react';

import { CPU, FROM, TO, datasource, range, recordCalls } from '../testHelpers';
import { EmberQuery } from '../types';
import { QueryEditor, positiveNumber, profileTypeOptions, splitList } from './QueryEditor';

const TYPES = [
  {
    ID: CPU,
    name: 'process_cpu',
    sampleType: 'cpu',
    sampleUnit: 'nanoseconds',
    periodType: 'cpu',
    periodUnit: 'nanoseconds',
  },
];

async function setup(query: Partial<EmberQuery> = {}) {
  const calls = recordCalls({
    ProfileTypes: { profileTypes: TYPES },
    LabelNames: { names: ['service_name', '__name__'] },
    LabelValues: { names: ['api', 'db'] },
  });
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const q: EmberQuery = {
    refId: 'A',
    queryType: 'both',
    profileTypeId: CPU,
    labelSelector: '{}',
    groupBy: [],
    ...query,
  };
  await act(async () => {
    render(
      <QueryEditor
        datasource={datasource({ uiUrl: 'http://ember:4040' })}
        query={q}
        onChange={onChange}
        onRunQuery={onRunQuery}
        range={range}
      />
    );
  });
  return { calls, onChange, onRunQuery };
}

describe('QueryEditor', () => {
  it('builds the selector with names and values of the picked profile type, and runs the query', async () => {
    const { calls, onChange, onRunQuery } = await setup();
    const input = screen.getByRole('combobox', { name: 'Label selector' }) as HTMLInputElement;
    await act(async () => {
      fireEvent.change(input, { target: { value: '{', selectionStart: 1 } });
    });
    // __name__ is Ember's own label: not offered.
    expect(screen.getAllByRole('option').map((o) => o.textContent)).toEqual(['service_name']);
    await act(async () => {
      fireEvent.keyDown(input, { key: 'Enter' });
    });
    await act(async () => {
      fireEvent.keyDown(input, { key: 'Enter' });
    });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ labelSelector: '{service_name="api"}' }));
    expect(onRunQuery).toHaveBeenCalled();
    const values = calls.find((c) => c.url.endsWith('/LabelValues'))!;
    expect(values.body).toEqual({
      name: 'service_name',
      matchers: [`{__profile_type__="${CPU}"}`],
      start: String(FROM),
      end: String(TO),
    });
  });

  it('links to the same query in Ember', async () => {
    await setup({ labelSelector: '{service_name="api"}' });
    const link = screen.getByRole('link', { name: /Open in Ember/ }).getAttribute('href')!;
    expect(new URL(link).searchParams.get('query')).toBe(`${CPU}{service_name="api"}`);
  });

  it('shows the two sides of a diff', async () => {
    await setup({ queryType: 'diff' });
    expect(screen.getByRole('combobox', { name: 'Baseline labels' })).toBeInTheDocument();
    expect(screen.getByRole('combobox', { name: 'Comparison labels' })).toBeInTheDocument();
  });
});

describe('query editor fields', () => {
  it('read numbers, lists and profile types', () => {
    expect(positiveNumber('')).toEqual({});
    expect(positiveNumber(' 15 ')).toEqual({ value: 15 });
    expect(positiveNumber('-1').error).toMatch(/not a positive number/);
    expect(splitList('a1, b2  c3,')).toEqual(['a1', 'b2', 'c3']);
    expect(profileTypeOptions(TYPES)).toEqual([
      { label: 'process_cpu · cpu (nanoseconds)', value: CPU, description: CPU },
    ]);
  });
});
