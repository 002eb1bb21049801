import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { EmberDataSource } from './datasource';
import { EmberOptions, EmberQuery, EmberSecureOptions } from './types';

export const plugin = new DataSourcePlugin<EmberDataSource, EmberQuery, EmberOptions, EmberSecureOptions>(
  EmberDataSource
)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
