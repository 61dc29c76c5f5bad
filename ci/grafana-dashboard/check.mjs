// Checks grafana/kraken-exporter.json against the dashboard and panel schema types that Grafana
// publishes on npm (@grafana/schema), with the TypeScript compiler: the dashboard as a whole
// against `Dashboard`, and each panel's options and custom field config against its panel
// plugin's `Options` and `FieldConfig`. Unknown fields, misspelt names, wrong types and enum
// values Grafana does not know are errors.
//
//   cd ci/grafana-dashboard && npm ci && npm run check
//
// The JSON is written into a TypeScript module as object literals, so string values are checked
// as literals against Grafana's string enums (Loose<> below turns those enums into the unions of
// their values) and TypeScript's excess-property check reports fields the schema lacks.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dashboardPath = join(here, '..', '..', 'grafana', 'kraken-exporter.json');
const exported = JSON.parse(readFileSync(dashboardPath, 'utf8'));
// __requires, __elements and __inputs belong to Grafana's export format, not to the dashboard
// model the schema describes.
const dashboard = Object.fromEntries(Object.entries(exported).filter(([key]) => !key.startsWith('__')));

// Panel plugins whose schema @grafana/schema publishes, and what it exports for them.
const plugins = {
  stat: { module: 'StatPanelCfg', fieldConfig: false },
  table: { module: 'TablePanelCfg', fieldConfig: true },
  timeseries: { module: 'TimeSeriesPanelCfg', fieldConfig: true },
  bargauge: { module: 'BarGaugePanelCfg', fieldConfig: false },
};
// Panel types without a published schema, checked only as dashboard panels.
const unchecked = new Set(['row', 'alertlist']);

const panels = [];
(function walk(list) {
  for (const panel of list ?? []) {
    panels.push(panel);
    walk(panel.panels);
  }
})(dashboard.panels);

const lines = [
  "import type * as schema from '@grafana/schema';",
  ...Object.entries(plugins).map(
    ([type, p]) =>
      `import type * as ${type} from '@grafana/schema/dist/esm/raw/composable/${type}/panelcfg/x/${p.module}_types.gen';`,
  ),
  '',
  '// String enums accept their values as literals; everything else keeps its type.',
  'type Loose<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Loose<U>[] : T extends object ? { [K in keyof T]: Loose<T[K]> } : T;',
  'type PanelParts<O, F> = { options?: Partial<Loose<O>>; custom?: Partial<Loose<F>> };',
  '',
  `export const dashboard: Loose<schema.Dashboard> = ${JSON.stringify(dashboard, null, 2)};`,
  '',
];
const problems = [];
for (const panel of panels) {
  const plugin = plugins[panel.type];
  if (!plugin) {
    if (!unchecked.has(panel.type)) {
      problems.push(`panel ${panel.id} (${panel.title}): type ${panel.type} has no published schema; add it to check.mjs`);
    }
    continue;
  }
  const fieldConfig = plugin.fieldConfig ? `${panel.type}.FieldConfig` : 'Record<string, unknown>';
  const parts = { options: panel.options ?? {}, custom: panel.fieldConfig?.defaults?.custom ?? {} };
  lines.push(`// panel ${panel.id}: ${panel.title}`);
  lines.push(`export const panel${panel.id}: PanelParts<${panel.type}.Options, ${fieldConfig}> = ${JSON.stringify(parts, null, 2)};`);
  lines.push('');
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}

const build = join(here, 'build');
mkdirSync(build, { recursive: true });
writeFileSync(join(build, 'dashboard.ts'), lines.join('\n'));
writeFileSync(
  join(build, 'tsconfig.json'),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      module: 'esnext',
      moduleResolution: 'bundler',
      target: 'es2022',
      skipLibCheck: true,
      types: [],
    },
    files: ['dashboard.ts'],
  }),
);
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(build, 'tsconfig.json'), '--pretty', 'false'], { stdio: 'inherit' });
} catch {
  console.error(`\n${dashboardPath} does not match @grafana/schema (line numbers refer to ${join(build, 'dashboard.ts')})`);
  process.exit(1);
}
const version = JSON.parse(readFileSync(join(here, 'node_modules', '@grafana', 'schema', 'package.json'), 'utf8')).version;
console.log(`grafana/kraken-exporter.json matches @grafana/schema ${version}: dashboard and ${panels.length} panels`);
