import { QueryEditorProps, SelectableValue, TimeRange } from '@grafana/data';
import {
  InlineField,
  InlineFieldRow,
  InlineSwitch,
  Input,
  LinkButton,
  MultiSelect,
  RadioButtonGroup,
  Select,
  Stack,
} from '@grafana/ui';
import React, { useCallback, useEffect, useMemo, useState } from 'react';

import { EmberDataSource } from '../datasource';
import { Aggregation, DiffSide, EmberOptions, EmberQuery, ProfileType, QueryType } from '../types';
import { LabelSelectorInput } from './LabelSelectorInput';

type Props = QueryEditorProps<EmberDataSource, EmberQuery, EmberOptions>;

const QUERY_TYPES: Array<SelectableValue<QueryType>> = [
  { label: 'Flame graph', value: 'profile', description: 'The merged flame graph of the range' },
  { label: 'Metrics', value: 'metrics', description: 'Time series per group' },
  { label: 'Both', value: 'both', description: 'Flame graph and time series (Explore)' },
  { label: 'Diff', value: 'diff', description: 'Baseline against comparison, as a diff flame graph' },
];

const AGGREGATIONS: Array<SelectableValue<Aggregation>> = [
  { label: 'Sum', value: 'sum' },
  { label: 'Average', value: 'average' },
];

const LABEL_WIDTH = 16;

/** Returns the profile type options: readable names, the ID as the value, grouped by profile name. */
export function profileTypeOptions(types: ProfileType[]): Array<SelectableValue<string>> {
  return [...types]
    .sort((a, b) => a.ID.localeCompare(b.ID))
    .map((t) => ({ label: `${t.name} · ${t.sampleType} (${t.sampleUnit})`, value: t.ID, description: t.ID }));
}

/** Parses a number field: empty is "not set", anything else must be a positive number. */
export function positiveNumber(text: string): { value?: number; error?: string } {
  const t = text.trim();
  if (t === '') {
    return {};
  }
  const n = Number(t);
  if (!Number.isFinite(n) || n <= 0) {
    return { error: `"${t}" is not a positive number` };
  }
  return { value: n };
}

/** Splits a comma- or space-separated list (span IDs pasted from a trace view). */
export function splitList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function QueryEditor(props: Props) {
  const { datasource, query, onChange, onRunQuery, range } = props;
  const [types, setTypes] = useState<ProfileType[]>([]);
  const [typesError, setTypesError] = useState<string>();
  const [groupNames, setGroupNames] = useState<string[]>([]);
  const queryType = query.queryType ?? 'both';

  useEffect(() => {
    let live = true;
    datasource
      .profileTypes(range)
      .then((t) => live && (setTypes(t), setTypesError(undefined)))
      .catch((e) => live && setTypesError(e instanceof Error ? e.message : String(e)));
    return () => {
      live = false;
    };
    // The range changes on every refresh; the types are looked up once per editor.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [datasource]);

  const change = useCallback(
    (patch: Partial<EmberQuery>, run = true) => {
      onChange({ ...query, ...patch });
      if (run) {
        onRunQuery();
      }
    },
    [onChange, onRunQuery, query]
  );

  const profileTypeId = query.profileTypeId;
  const getLabelNames = useCallback(
    (selector: string) => datasource.labelNames(datasource.interpolate(selector), range, profileTypeId || undefined),
    [datasource, range, profileTypeId]
  );
  const getLabelValues = useCallback(
    (name: string, selector: string) =>
      datasource.labelValues(name, datasource.interpolate(selector), range, profileTypeId || undefined),
    [datasource, range, profileTypeId]
  );

  const typeOptions = useMemo(() => {
    const options = profileTypeOptions(types);
    if (profileTypeId && !options.some((o) => o.value === profileTypeId)) {
      // A template variable, or a type without data in this range: keep it selectable.
      options.unshift({ label: profileTypeId, value: profileTypeId });
    }
    return options;
  }, [types, profileTypeId]);

  const link = range ? datasource.uiLink(query, range as TimeRange) : undefined;

  return (
    <Stack direction="column" gap={0.5}>
      <InlineFieldRow>
        <InlineField label="Profile type" labelWidth={LABEL_WIDTH} invalid={Boolean(typesError)} error={typesError}>
          {/* Select, not Combobox: it is in every Grafana from 11.0, which plugin.json allows. */}
          {/* eslint-disable-next-line @typescript-eslint/no-deprecated */}
          <Select
            inputId={`${query.refId}-profile-type`}
            aria-label="Profile type"
            width={48}
            options={typeOptions}
            value={profileTypeId || null}
            placeholder={types.length ? 'Pick a profile type' : 'No profile types in this range'}
            allowCustomValue
            onChange={(v) => change({ profileTypeId: v?.value ?? '' })}
          />
        </InlineField>
        <InlineField label="Query type">
          <RadioButtonGroup options={QUERY_TYPES} value={queryType} onChange={(v) => change({ queryType: v })} />
        </InlineField>
        {link && (
          <LinkButton
            href={link}
            target="_blank"
            rel="noopener noreferrer"
            variant="secondary"
            icon="external-link-alt"
          >
            Open in Ember
          </LinkButton>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField
          label="Labels"
          labelWidth={LABEL_WIDTH}
          grow
          tooltip='A selector such as {service_name="api",env=~"prod.*"}; Shift+Enter runs the query'
        >
          <LabelSelectorInput
            id={`${query.refId}-labels`}
            value={query.labelSelector ?? '{}'}
            onChange={(labelSelector) => change({ labelSelector })}
            onRunQuery={onRunQuery}
            getLabelNames={getLabelNames}
            getLabelValues={getLabelValues}
          />
        </InlineField>
      </InlineFieldRow>
      {queryType === 'diff' && (
        <>
          <DiffSideEditor
            name="Baseline"
            side={query.baseline}
            onChange={(baseline) => change({ baseline })}
            onRunQuery={onRunQuery}
            getLabelNames={getLabelNames}
            getLabelValues={getLabelValues}
            refId={query.refId}
          />
          <DiffSideEditor
            name="Comparison"
            side={query.comparison}
            onChange={(comparison) => change({ comparison })}
            onRunQuery={onRunQuery}
            getLabelNames={getLabelNames}
            getLabelValues={getLabelValues}
            refId={query.refId}
          />
        </>
      )}
      <InlineFieldRow>
        {(queryType === 'metrics' || queryType === 'both') && (
          <>
            <InlineField label="Group by" labelWidth={LABEL_WIDTH} tooltip="One time series per value of these labels">
              <MultiSelect
                inputId={`${query.refId}-group-by`}
                aria-label="Group by"
                width={32}
                allowCustomValue
                options={groupNames.map((n) => ({ label: n, value: n }))}
                value={query.groupBy ?? []}
                onOpenMenu={() => getLabelNames(query.labelSelector ?? '{}').then(setGroupNames, () => undefined)}
                onChange={(v) => change({ groupBy: v.map((o) => o.value!).filter(Boolean) })}
              />
            </InlineField>
            <NumberField
              label="Step"
              id={`${query.refId}-step`}
              tooltip="Seconds between points; empty: Grafana's interval, at least the datasource's minimum step"
              placeholder="auto"
              value={query.step}
              onChange={(step) => change({ step })}
            />
            <InlineField label="Aggregation">
              <RadioButtonGroup
                options={AGGREGATIONS}
                value={query.aggregation ?? 'sum'}
                onChange={(aggregation) => change({ aggregation })}
              />
            </InlineField>
            <InlineField label="Exemplars" tooltip="Individual profiles as points on the series">
              <InlineSwitch
                id={`${query.refId}-exemplars`}
                value={Boolean(query.includeExemplars)}
                onChange={(e) => change({ includeExemplars: e.currentTarget.checked })}
              />
            </InlineField>
          </>
        )}
        {queryType !== 'metrics' && (
          <NumberField
            label="Max nodes"
            id={`${query.refId}-max-nodes`}
            tooltip="The flame graph keeps this many nodes; the rest merge into other (Ember's default: 8192)"
            placeholder="8192"
            value={query.maxNodes}
            onChange={(maxNodes) => change({ maxNodes })}
          />
        )}
        {(queryType === 'profile' || queryType === 'both') && (
          <InlineField
            label="Span selector"
            tooltip="Span IDs, separated by commas or spaces: the flame graph of those spans only"
          >
            <Input
              id={`${query.refId}-span-selector`}
              width={32}
              placeholder="span IDs"
              defaultValue={(query.spanSelector ?? []).join(', ')}
              onBlur={(e) => {
                const spanSelector = splitList(e.currentTarget.value);
                if (spanSelector.join(',') !== (query.spanSelector ?? []).join(',')) {
                  change({ spanSelector });
                }
              }}
            />
          </InlineField>
        )}
      </InlineFieldRow>
    </Stack>
  );
}

interface SideProps {
  name: string;
  refId: string;
  side?: DiffSide;
  onChange: (side: DiffSide) => void;
  onRunQuery: () => void;
  getLabelNames: (selector: string) => Promise<string[]>;
  getLabelValues: (name: string, selector: string) => Promise<string[]>;
}

function DiffSideEditor(props: SideProps) {
  const side = props.side ?? {};
  const id = `${props.refId}-${props.name.toLowerCase()}`;
  const time = (key: 'from' | 'to', placeholder: string) => (
    <InlineField label={key === 'from' ? 'From' : 'To'}>
      <Input
        id={`${id}-${key}`}
        width={16}
        placeholder={placeholder}
        defaultValue={side[key] ?? ''}
        onBlur={(e) => {
          const value = e.currentTarget.value.trim();
          if (value !== (side[key] ?? '')) {
            props.onChange({ ...side, [key]: value || undefined });
          }
        }}
      />
    </InlineField>
  );
  return (
    <InlineFieldRow>
      <InlineField
        label={props.name}
        labelWidth={LABEL_WIDTH}
        grow
        tooltip="Empty: the query's labels. Without times, both sides split the panel range in halves when their labels are the same, and take all of it when they differ."
      >
        <LabelSelectorInput
          id={`${id}-labels`}
          aria-label={`${props.name} labels`}
          placeholder="the query's labels"
          value={side.labelSelector ?? ''}
          onChange={(labelSelector) => props.onChange({ ...side, labelSelector: labelSelector || undefined })}
          onRunQuery={props.onRunQuery}
          getLabelNames={props.getLabelNames}
          getLabelValues={props.getLabelValues}
        />
      </InlineField>
      {time('from', props.name === 'Baseline' ? 'now-2h' : 'now-1h')}
      {time('to', props.name === 'Baseline' ? 'now-1h' : 'now')}
    </InlineFieldRow>
  );
}

interface NumberFieldProps {
  label: string;
  id: string;
  tooltip: string;
  placeholder: string;
  value?: number;
  onChange: (value: number | undefined) => void;
}

/** A number input committed on blur or Enter; anything but a positive number says so. */
function NumberField(props: NumberFieldProps) {
  const [error, setError] = useState<string>();
  const commit = (text: string) => {
    const parsed = positiveNumber(text);
    setError(parsed.error);
    if (!parsed.error && parsed.value !== props.value) {
      props.onChange(parsed.value);
    }
  };
  return (
    <InlineField label={props.label} tooltip={props.tooltip} invalid={Boolean(error)} error={error}>
      <Input
        id={props.id}
        width={12}
        placeholder={props.placeholder}
        defaultValue={props.value ?? ''}
        onBlur={(e) => commit(e.currentTarget.value)}
        onKeyDown={(e) => e.key === 'Enter' && commit(e.currentTarget.value)}
      />
    </InlineField>
  );
}
