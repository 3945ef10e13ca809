'use strict';
// The package as published: `npm pack` makes a tarball with what it needs and nothing
// of the tests, and a fresh project installs it by path, offline (it has no runtime
// dependency), then require()s it, import()s it and type-checks against it.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const pkg = require('../package.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fixrx-pack-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const run = (cmd, args, cwd, env = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });

let tarball;
test('npm pack ships the entries, lib/, types, README and CHANGELOG, and no tests', () => {
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT));
  assert.equal(packed.version, '0.2.0');
  tarball = path.join(tmp, packed.filename);
  assert.ok(fs.existsSync(tarball));
  const files = packed.files.map((f) => f.path).sort();
  for (const want of ['package.json', 'index.js', 'index.mjs', 'index.d.ts', 'index.d.mts', 'README.md', 'CHANGELOG.md']) {
    assert.ok(files.includes(want), `${want} is in the tarball: ${files.join(', ')}`);
  }
  for (const f of fs.readdirSync(path.join(ROOT, 'lib'))) assert.ok(files.includes(`lib/${f}`), `lib/${f}`);
  const stray = files.filter((f) => /^(test|test-support|examples|node_modules)\//.test(f) || f === 'tsconfig.json');
  assert.deepEqual(stray, [], 'nothing of the tests or examples ships');
  assert.deepEqual(pkg.dependencies || {}, {}, 'no runtime dependency');
  assert.equal(pkg.engines.node, '>=20');
});

test('a fresh project installs the tarball offline and can require, import and type-check it', () => {
  assert.ok(tarball, 'the pack test ran');
  const project = path.join(tmp, 'consumer');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  // An empty cache and --offline: the install cannot have fetched anything.
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], project, {
    npm_config_cache: path.join(tmp, 'cache'),
  });
  const installed = JSON.parse(fs.readFileSync(path.join(project, 'node_modules/@fixrx/realtime-client/package.json'), 'utf8'));
  assert.equal(installed.version, '0.2.0');

  const names = ['createClient', 'emitServiceCreated', 'emitBatch', 'verifyWebhook', 'createClientToken', 'FixrxError'];
  const cjs = run(process.execPath, ['-e', `
    const rt = require('@fixrx/realtime-client');
    const c = rt.createClient({ url: 'http://127.0.0.1:9', token: 't' });
    console.log(JSON.stringify({ kinds: ${JSON.stringify(names)}.map((n) => typeof rt[n]), fire: typeof rt.emitServiceCreated.fire,
      path: require.resolve('@fixrx/realtime-client'), deadlineMs: c.deadlineMs }));
  `], project);
  const out = JSON.parse(cjs);
  assert.deepEqual(out.kinds, names.map(() => 'function'));
  assert.equal(out.fire, 'function');
  assert.equal(out.deadlineMs, 30000);
  assert.ok(out.path.startsWith(fs.realpathSync(project)), `resolved inside the project: ${out.path}`);

  const esm = run(process.execPath, ['--input-type=module', '-e', `
    import realtime, { createClientToken, verifyWebhook } from '@fixrx/realtime-client';
    console.log(JSON.stringify([typeof createClientToken, typeof verifyWebhook, realtime.createClientToken === createClientToken]));
  `], project);
  assert.deepEqual(JSON.parse(esm), ['function', 'function', true]);

  fs.writeFileSync(path.join(project, 'check.ts'), [
    "import { createClient, emitServiceCreated, createClientToken, verifyWebhook } from '@fixrx/realtime-client';",
    "const c = createClient({ url: 'http://localhost:3000', token: 't', deadlineMs: 2000 });",
    "emitServiceCreated.fire(c, { service: { id: 's', vendorId: 'v' } }, { onError: (err) => console.log(err.message) });",
    "const t: string = createClientToken({ sub: 'u1', role: 'vendor' }, 'secret');",
    "const ok: boolean = verifyWebhook('{}', { 'x-webhook-timestamp': '1' }, 'secret');",
    "// @ts-expect-error a role the server refuses",
    "createClientToken({ sub: 'u1', role: 'root' }, 'secret');",
    'console.log(t, ok);',
  ].join('\n'));
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022',
    '--typeRoots', path.join(ROOT, 'node_modules', '@types'), '--types', 'node', 'check.ts'], project);
});
