// Strict TypeScript type of a Grafana dashboard as pyexec ships it, built from
// Grafana's published schema (npm @grafana/schema). gen.mjs turns a dashboard
// JSON file into a .ts module that assigns the JSON as an object literal to
// `PyexecDashboard`, so tsc's excess-property check rejects misspelt fields at
// every depth, and a wrong type (a string where a number belongs, an unknown
// enum value) is a type error.
//
// What is made stricter than the schema, and why:
// - Enums: the schema types e.g. thresholds.mode as the TS enum ThresholdsMode;
//   JSON holds the string "absolute". `Plain<T>` maps every enum to the union
//   of its literal values (string and numeric enums alike).
// - Panels: the schema types `options` and `targets` as Record<string, unknown>
//   and fieldConfig.defaults.custom as `T & Record<string, unknown>` (anything
//   goes). Panels here are a union discriminated by `type`, each with the
//   panel plugin's own Options / FieldConfig types from @grafana/schema, so a
//   misspelt option is caught too. Add a member to `VizPanel` to use another
//   panel type.
// - Targets: @grafana/schema publishes no Prometheus query type; PrometheusQuery
//   below is the common DataQuery plus the fields Grafana's Prometheus data
//   source saves (public/app/plugins/datasource/prometheus dataquery.cue).
import type {
  DataQuery,
  DataSourceRef,
  Dashboard,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
  VariableModel,
  AnnotationContainer,
} from '@grafana/schema';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';

/** Deep JSON view of a schema type: enums become their literal values. */
export type Plain<T> =
  0 extends 1 & T ? T // any stays any
  : T extends string ? `${T}`
  : T extends number ? (`${T}` extends `${infer N extends number}` ? N : T)
  : T extends boolean | null | undefined ? T
  : T extends (...args: never[]) => unknown ? never
  : T extends ReadonlyArray<infer U> ? Array<Plain<U>>
  : T extends object ? { [K in keyof T]: Plain<T[K]> }
  : T;

export interface PrometheusQuery extends Omit<DataQuery, 'datasource'> {
  datasource?: DataSourceRef;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
  editorMode?: 'code' | 'builder';
}

/** A field config whose `custom` part is exactly the plugin's type. */
type StrictFieldConfig<C> = Omit<FieldConfig, 'custom'> & { custom?: C };
type StrictFieldConfigSource<C> = Omit<FieldConfigSource, 'defaults'> & {
  defaults: StrictFieldConfig<C>;
};

type VizPanelOf<Type extends string, Options, Custom> = Omit<
  Panel,
  'type' | 'options' | 'targets' | 'fieldConfig' | 'datasource'
> & {
  type: Type;
  datasource: DataSourceRef;
  title: string;
  gridPos: NonNullable<Panel['gridPos']>;
  options: Options;
  fieldConfig: StrictFieldConfigSource<Custom>;
  targets: PrometheusQuery[];
};

export type VizPanel =
  | VizPanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | VizPanelOf<'stat', Stat.Options, Record<string, never>>;

export type StrictRowPanel = Omit<RowPanel, 'panels'> & { panels: VizPanel[] };

export type StrictDashboard = Omit<Dashboard, 'panels' | 'templating' | 'annotations'> & {
  title: string;
  uid: string;
  annotations: AnnotationContainer;
  panels: Array<VizPanel | StrictRowPanel>;
  templating: { list: VariableModel[] };
};

export type PyexecDashboard = Plain<StrictDashboard>;
