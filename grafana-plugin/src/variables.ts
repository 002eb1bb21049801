import { CustomVariableSupport, DataQueryRequest, DataQueryResponse, MetricFindValue } from '@grafana/data';
import { Observable, from, map } from 'rxjs';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import type { EmberDataSource } from './datasource';
import { VariableQuery } from './types';

/**
 * Template variables: the profile types (text is the readable name, value the ID), the
 * label names, or one label's values, of the series a profile type and selector match.
 */
export class EmberVariableSupport extends CustomVariableSupport<EmberDataSource, VariableQuery> {
  editor = VariableQueryEditor;

  constructor(private readonly datasource: EmberDataSource) {
    super();
  }

  query(request: DataQueryRequest<VariableQuery>): Observable<DataQueryResponse> {
    return from(this.values(request.targets[0], request)).pipe(map((data) => ({ data })));
  }

  async values(query: VariableQuery, request: DataQueryRequest<VariableQuery>): Promise<MetricFindValue[]> {
    const ds = this.datasource;
    const replace = (s?: string) => ds.interpolate(s ?? '', request.scopedVars);
    const selector = (s?: string) => replace(s).trim() || '{}';
    switch (query.type) {
      case 'profileType':
        return (await ds.profileTypes(request.range)).map((t) => ({
          text: `${t.name} - ${t.sampleType} (${t.sampleUnit})`,
          value: t.ID,
        }));
      case 'label':
        return (
          await ds.labelNames(selector(query.labelSelector), request.range, replace(query.profileTypeId) || undefined)
        ).map((text) => ({ text }));
      case 'labelValue':
        if (!query.labelName) {
          return [];
        }
        return (
          await ds.labelValues(
            replace(query.labelName),
            selector(query.labelSelector),
            request.range,
            replace(query.profileTypeId) || undefined
          )
        ).map((text) => ({ text }));
      default:
        return [];
    }
  }
}
