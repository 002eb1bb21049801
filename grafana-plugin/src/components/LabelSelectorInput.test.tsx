import { act, fireEvent, render, screen } from '@testing-library/react';
import React from 'react';

import { LabelSelectorInput } from './LabelSelectorInput';

const NAMES = ['service_name', 'pod', 'env'];
const VALUES: Record<string, string[]> = { service_name: ['api', 'db'], env: ['prod', 'dev'] };

function setup(value = '') {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const asked: Array<[string, string]> = [];
  render(
    <LabelSelectorInput
      value={value}
      onChange={onChange}
      onRunQuery={onRunQuery}
      getLabelNames={async () => NAMES}
      getLabelValues={async (name, selector) => {
        asked.push([name, selector]);
        return VALUES[name] ?? [];
      }}
    />
  );
  const input = screen.getByRole('combobox') as HTMLInputElement;
  return { input, onChange, onRunQuery, asked };
}

/** Types `text` at the end of the field and lets the suggestions arrive. */
async function type(input: HTMLInputElement, text: string) {
  await act(async () => {
    const value = input.value + text;
    fireEvent.change(input, { target: { value, selectionStart: value.length } });
  });
}

async function key(input: HTMLInputElement, k: string, extra: object = {}) {
  await act(async () => {
    fireEvent.keyDown(input, { key: k, ...extra });
  });
}

const options = () => screen.queryAllByRole('option').map((o) => o.textContent);

describe('LabelSelectorInput', () => {
  it('builds a selector from the keyboard: name, then value, with the arrow keys and Enter', async () => {
    const { input, onChange, asked } = setup();
    await type(input, 'e');
    // Names holding "e", those that start with it first.
    expect(options()).toEqual(['env', 'service_name']);
    await key(input, 'Enter');
    expect(input.value).toBe('{env=""}');
    expect(options()).toEqual(['prod', 'dev']);
    await key(input, 'ArrowDown');
    await key(input, 'Enter');
    expect(input.value).toBe('{env="dev"}');
    expect(onChange).toHaveBeenLastCalledWith('{env="dev"}');
    expect(asked).toEqual([['env', '{}']]);
  });

  it('asks for values with the rest of the selector', async () => {
    const { input, asked } = setup();
    await type(input, '{service_name="api",env="');
    expect(options()).toEqual(['prod', 'dev']);
    expect(asked[asked.length - 1]).toEqual(['env', '{service_name="api"}']);
  });

  it('keeps a pasted selector, commits it on blur and runs the query on Enter', async () => {
    const { input, onChange, onRunQuery } = setup('{}');
    await act(async () => {
      fireEvent.change(input, { target: { value: '{service_name="api"}', selectionStart: 20 } });
    });
    fireEvent.blur(input);
    expect(onChange).toHaveBeenCalledWith('{service_name="api"}');
    await key(input, 'Enter');
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('closes the suggestions on Escape, and Shift+Enter runs the query even when they are open', async () => {
    const { input, onRunQuery } = setup();
    await type(input, '{');
    expect(options()).toHaveLength(3);
    await key(input, 'Escape');
    expect(options()).toHaveLength(0);
    await type(input, 's');
    await key(input, 'Enter', { shiftKey: true });
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('says where a selector does not parse', async () => {
    const { input } = setup();
    await type(input, '{service_name=api}');
    expect(screen.getByRole('alert').textContent).toMatch(/expected a double-quoted value at position 15/);
    expect(input.getAttribute('aria-invalid')).toBe('true');
  });
});
