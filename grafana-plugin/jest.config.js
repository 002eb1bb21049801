// force timezone to UTC to allow tests to work regardless of local timezone
// generally used by snapshots, but can affect specific tests
process.env.TZ = 'UTC';

const base = require('./.config/jest.config');
const { grafanaESModules, nodeModulesToTransform } = require('./.config/jest/utils');

module.exports = {
  // Jest configuration provided by Grafana scaffolding
  ...base,
  transform: {
    ...base.transform,
    // The d3 modules inside @grafana/data ship as ES modules in `.mjs` files, which the
    // scaffolded transform (`.js`/`.ts` only) leaves untouched.
    '^.+\\.mjs$': ['@swc/jest', { jsc: { parser: { syntax: 'ecmascript' } }, module: { type: 'commonjs' } }],
  },
  // @grafana/flamegraph (the unit tests check frames with its checkFields) brings every d3 module.
  transformIgnorePatterns: [
    nodeModulesToTransform([...grafanaESModules, 'd3-[a-z-]+', 'internmap', 'delaunator', 'robust-predicates']),
  ],
  // The browser test page (e2e/) runs in Chromium against a real Ember, not in jest.
  testPathIgnorePatterns: ['<rootDir>/node_modules/', '<rootDir>/e2e/'],
  // Rendering Grafana's components takes seconds on a loaded 2-core machine; the
  // default 5 s per test is a timing assert, not a check.
  testTimeout: 60000,
};
