// Schema check of the pyexec Grafana dashboard.
//
//   node check-schema/check.mjs [DASHBOARD.json]     (default: ../pyexec.json)
//
// 1. positive: generate generated/pyexec.gen.ts from the dashboard and run
//    `tsc --noEmit -p check-schema`: must pass.
// 2. negative: copies of the same dashboard, each with one misspelt or
//    mistyped field, are generated into .negative/ and type-checked in one
//    tsc run: every copy must fail, with an error that names the mutation.
//    This proves the check has teeth (tsc would silently accept an extra
//    property on an imported JSON module).
// Exit status 0 only if both hold.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const input = resolve(process.argv[2] ?? join(here, '..', 'pyexec.json'));
const tsc = join(here, '..', 'node_modules', 'typescript', 'bin', 'tsc');
let failed = 0;
const ok = (msg) => console.log(`ok   ${msg}`);
const bad = (msg) => { failed++; console.log(`FAIL ${msg}`); };

function gen(src, out) {
  execFileSync(process.execPath, [join(here, 'gen.mjs'), src, out], { stdio: 'inherit' });
}
function runTsc(project) {
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--pretty', 'false', '-p', project], { encoding: 'utf8' });
  return { status: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

// ---- 1. the real dashboard -------------------------------------------------
gen(input, join(here, 'generated', 'pyexec.gen.ts'));
const pos = runTsc(here);
if (pos.status === 0) ok(`${input} matches the @grafana/schema dashboard type`);
else bad(`${input} does not match the schema:\n${pos.out}`);

// ---- 2. negative tests: each mutation must be rejected ----------------------
const dash = JSON.parse(readFileSync(input, 'utf8'));
const firstOf = (type) => dash.panels.findIndex((p) => p.type === type);
const ts = firstOf('timeseries');
const st = firstOf('stat');
const row = firstOf('row');
const rename = (obj, from, to) => { obj[to] = obj[from]; delete obj[from]; };

// [name, mutate(copy), text the tsc error must contain]
const mutations = [
  ['misspelt dashboard field', (d) => rename(d, 'refresh', 'refesh'), 'refesh'],
  ['misspelt panel field', (d) => rename(d.panels[ts], 'gridPos', 'gridpos'), 'gridpos'],
  ['misspelt target field', (d) => rename(d.panels[ts].targets[0], 'legendFormat', 'legendFromat'), 'legendFromat'],
  ['misspelt fieldConfig.defaults field', (d) => rename(d.panels[ts].fieldConfig.defaults, 'unit', 'units'), 'units'],
  ['misspelt timeseries custom field', (d) => rename(d.panels[ts].fieldConfig.defaults.custom, 'fillOpacity', 'fillOpacty'), 'fillOpacty'],
  ['misspelt timeseries option', (d) => rename(d.panels[ts].options.legend, 'showLegend', 'showLegnd'), 'showLegnd'],
  ['misspelt stat option', (d) => rename(d.panels[st].options, 'colorMode', 'colourMode'), 'colourMode'],
  ['misspelt variable field', (d) => rename(d.templating.list[2], 'includeAll', 'includAll'), 'includAll'],
  ['string where a number belongs (gridPos.h)', (d) => { d.panels[ts].gridPos.h = '8'; }, "'string' is not assignable to type 'number'"],
  ['unknown string enum value (thresholds.mode)', (d) => { d.panels[ts].fieldConfig.defaults.thresholds.mode = 'absolut'; }, '"absolut"'],
  ['unknown stat enum value (colorMode)', (d) => { d.panels[st].options.colorMode = 'valu'; }, '"valu"'],
  ['unknown numeric enum value (variable hide)', (d) => { d.templating.list[0].hide = 7; }, '7'],
  ['unknown panel type', (d) => { d.panels[ts].type = 'timeserie'; }, '"timeserie"'],
  ['boolean as string (row collapsed)', (d) => { d.panels[row].collapsed = 'no'; }, "'string' is not assignable to type 'boolean'"],
  ['missing required field (target expr)', (d) => { delete d.panels[ts].targets[0].expr; }, 'expr'],
];

const negDir = join(here, '.negative');
rmSync(negDir, { recursive: true, force: true });
mkdirSync(negDir, { recursive: true });
const files = mutations.map(([name, mutate], i) => {
  const copy = structuredClone(dash);
  mutate(copy);
  const json = join(negDir, `case${i}.json`);
  writeFileSync(json, JSON.stringify(copy, null, 2));
  const out = join(negDir, `case${i}.gen.ts`);
  gen(json, out);
  return `case${i}.gen.ts`;
});
writeFileSync(join(negDir, 'tsconfig.json'), JSON.stringify({
  extends: '../tsconfig.json',
  include: ['../dashboard-types.ts', ...files],
}, null, 2));
const neg = runTsc(negDir);
const errorsByFile = new Map();
for (const line of neg.out.split('\n')) {
  const m = line.match(/(case\d+)\.gen\.ts\(\d+,\d+\): error (TS\d+: .*)/);
  if (m) errorsByFile.set(m[1], [...(errorsByFile.get(m[1]) ?? []), m[2]]);
}
mutations.forEach(([name, , expect], i) => {
  const errs = errorsByFile.get(`case${i}`) ?? [];
  const hit = errs.find((e) => e.includes(expect));
  if (hit) ok(`rejects ${name}: ${hit.slice(0, 150)}`);
  else bad(`did not reject ${name} (expected an error containing ${JSON.stringify(expect)}; got ${JSON.stringify(errs)})`);
});
if (neg.status === 0) bad('tsc accepted the mutated copies');
if (!failed) rmSync(negDir, { recursive: true, force: true });

console.log(`schema check: ${mutations.length + 1 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
