// A busy Node.js program for Ember's acceptance test: it profiles itself with
// @pyroscope/nodejs (wall time with CPU time, and heap) and pushes to the
// server given on the command line, spending most of its time in emberHotLoop.
//
//   node busy_app.js <server-url> <app-name> <tenant> <seconds>
'use strict';

const Pyroscope = require('@pyroscope/nodejs');

const [server, app, tenant, seconds] = process.argv.slice(2);
if (!server || !app) {
  console.error('usage: node busy_app.js <server-url> <app-name> <tenant> <seconds>');
  process.exit(2);
}

Pyroscope.init({
  serverAddress: server,
  appName: app,
  tenantID: tenant || undefined,
  flushIntervalMs: 1000,
  tags: { env: 'acceptance', 'otel.scope.name': 'ember-test' },
  wall: { collectCpuTime: true },
});
Pyroscope.start();

function emberHotLoop(n) {
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc = (acc + Math.sqrt(i) * 31) % 1000003;
  }
  return acc;
}

const deadline = Date.now() + Number(seconds || 4) * 1000;
let sink = 0;
function tick() {
  // Yield between slices so the profiler's timers can flush.
  const sliceEnd = Date.now() + 50;
  while (Date.now() < sliceEnd) {
    sink += emberHotLoop(100000);
  }
  if (Date.now() < deadline) {
    setImmediate(tick);
  } else {
    Pyroscope.stop().then(
      () => {
        console.log('done', sink);
        // Give the last upload time to finish.
        setTimeout(() => process.exit(0), 1000);
      },
      (e) => {
        console.error('stop failed', e);
        process.exit(1);
      },
    );
  }
}
tick();
