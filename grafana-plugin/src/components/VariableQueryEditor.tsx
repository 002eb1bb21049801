import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, RadioButtonGroup } from '@grafana/ui';
import React from 'react';

import type { EmberDataSource } from '../datasource';
import { EmberOptions, EmberQuery, VariableQuery } from '../types';

type Props = QueryEditorProps<EmberDataSource, EmberQuery, EmberOptions, VariableQuery>;

const TYPES: Array<SelectableValue<VariableQuery['type']>> = [
  { label: 'Profile types', value: 'profileType' },
  { label: 'Label names', value: 'label' },
  { label: 'Label values', value: 'labelValue' },
];

/** The variable editor: what to list, and of which profile type and series. */
export function VariableQueryEditor({ query, onChange }: Props) {
  const type = query.type ?? 'profileType';
  const set = (patch: Partial<Record<string, string>>) => onChange({ ...query, ...patch } as VariableQuery);
  const text = (key: string, label: string, placeholder: string, tooltip: string) => (
    <InlineField label={label} labelWidth={20} tooltip={tooltip}>
      <Input
        id={`variable-${key}`}
        width={48}
        placeholder={placeholder}
        defaultValue={(query as unknown as Record<string, string | undefined>)[key] ?? ''}
        onBlur={(e) => set({ [key]: e.currentTarget.value.trim() })}
      />
    </InlineField>
  );
  return (
    <>
      <InlineFieldRow>
        <InlineField label="List" labelWidth={20}>
          <RadioButtonGroup
            options={TYPES}
            value={type}
            onChange={(v) => onChange({ refId: query.refId, type: v } as VariableQuery)}
          />
        </InlineField>
      </InlineFieldRow>
      {type !== 'profileType' &&
        text('profileTypeId', 'Profile type', 'any, or e.g. $profile_type', 'Only series of this profile type')}
      {type !== 'profileType' && text('labelSelector', 'Labels', '{}', 'Only series this selector matches')}
      {type === 'labelValue' && text('labelName', 'Label', 'service_name', 'The label whose values are listed')}
    </>
  );
}
