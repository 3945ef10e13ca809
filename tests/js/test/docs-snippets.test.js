'use strict';
// Every shell and JavaScript snippet of the user documentation runs, against the real
// server, as a reader would run it: README.md and docs/*.md (docs/benchmarks.md aside:
// see doc-blocks.js), block by block, in order.
//
// - One server per page, started as `cargo run` starts it: zero configuration, that is
//   development mode (`dev-api-token`, GET /dev/token), on a random port. The documented
//   `localhost:3000` and `127.0.0.1:3000` become its address, and WS_URL (the smoke
//   client's setting) points at it.
// - Shell blocks run with bash from the repository root, under `set -eo pipefail`, with
//   `curl` failing on an HTTP error (`--fail-with-body`) and the server binary on PATH
//   as `fixrx-realtime`. JavaScript blocks run with node (ESM when they `import`), able
//   to load socket.io-client, jsonwebtoken, @fixrx/realtime-client (clients/node), and
//   socket.io with express (the migration page's "before"; installed in
//   dev/bench/node-baseline when missing).
// - A non-zero exit or a timeout fails with the page and line of the block.
// - Every relative link of these pages, and of the READMEs that link into them, resolves
//   to a file and, for Markdown, to a heading.
// - Attributes in the info string (doc-blocks.js) say what a block needs: `server`
//   blocks (`cargo run`) are stood in for by the test's server; `background` blocks (the
//   smoke client) run until the page is done; `expect-background=` checks that what a
//   block sent reached the background block; `no-run <reason>` blocks are listed, and
//   there may be at most MAX_NO_RUN of them.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { REPO, SHELL, JS, docFiles, blocks, runnable, brokenLinks } = require('./doc-blocks');

/** The most blocks the documentation may exempt from running; raising it is a decision. */
const MAX_NO_RUN = 8;
/** Per block, unless it says `timeout=<seconds>`. */
const DEFAULT_TIMEOUT_MS = 30000;

/** Zero configuration: the helpers' secrets unset (an empty value counts as unset). */
const ZERO_CONFIG = { JWT_SECRET: '', API_TOKEN: '', CLIENT_ORIGIN: '', APP_ENV: '' };

const BASELINE = path.join(REPO, 'dev', 'bench', 'node-baseline');

/**
 * Commands a snippet may show but the test never runs: they build (the machine the
 * tests run on may be shared and the binary is built already), or deploy somewhere.
 * A block that uses one must say `server` or `no-run <reason>`; it is not even started.
 */
const FORBIDDEN = /(^|[\s;&|(`$])(cargo|docker|kubectl|helm|rustup)\s|dev\/test\.sh|compare\.py|run-all\.sh/m;
const isForbidden = (b) => FORBIDDEN.test(b.code);

// ---------------------------------------------------------------------------
// Where the JavaScript snippets run: a directory whose node_modules holds what they load.

function snippetDir() {
  if (!fs.existsSync(path.join(BASELINE, 'node_modules', 'socket.io'))) {
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: BASELINE,
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 180000,
    });
    assert.equal(r.status, 0, `npm ci in dev/bench/node-baseline failed: ${r.stderr}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fixrx-docs-'));
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(path.join(modules, '@fixrx'), { recursive: true });
  fs.symlinkSync(path.join(REPO, 'clients', 'node'), path.join(modules, '@fixrx', 'realtime-client'));
  for (const root of [path.join(REPO, 'tests', 'js', 'node_modules'), path.join(BASELINE, 'node_modules')]) {
    for (const name of fs.readdirSync(root)) {
      const target = path.join(modules, name);
      if (name.startsWith('.') || name === '@fixrx' || fs.existsSync(target)) continue;
      fs.symlinkSync(path.join(root, name), target);
    }
  }
  return dir;
}

// ---------------------------------------------------------------------------
// Running one block

const SHELL_PRELUDE = [
  'set -eo pipefail',
  'curl() { command curl --fail-with-body --show-error --max-time 10 "$@"; }',
  '',
].join('\n');

/** The documented address, made the test server's. */
function localize(code, server) {
  return code.replace(/\b(localhost|127\.0\.0\.1):3000\b/g, `127.0.0.1:${server.port}`);
}

/** Spawns a block's interpreter in its own process group (so a timeout kills all of it). */
function spawnBlock(kind, file, { env, cwd }) {
  const bin = kind === 'sh' ? 'bash' : process.execPath;
  return spawn(bin, [file], { cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Runs a chain of blocks (a block and the `continues` blocks after it) to its exit. */
function runChain(chain, ctx) {
  const first = chain[0];
  const kind = SHELL.has(first.lang) ? 'sh' : 'js';
  const code = localize(chain.map((b) => b.code).join('\n'), ctx.server);
  let file;
  if (kind === 'sh') {
    file = path.join(ctx.dir, `block-${first.line}.sh`);
    fs.writeFileSync(file, SHELL_PRELUDE + code + '\n');
  } else {
    const esm = /^\s*import\s/m.test(code);
    file = path.join(ctx.dir, `block-${path.basename(first.file, '.md')}-${first.line}.${esm ? 'mjs' : 'cjs'}`);
    fs.writeFileSync(file, code + '\n');
  }
  const last = chain[chain.length - 1];
  const timeout = Number(last.attrs.get('timeout') || first.attrs.get('timeout') || 0) * 1000 || DEFAULT_TIMEOUT_MS;
  const child = spawnBlock(kind, file, { env: ctx.env, cwd: kind === 'sh' ? REPO : ctx.dir });
  child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      killGroup(child);
      resolve({ code: null, timedOut: true, stdout, stderr, timeout });
    }, timeout);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      killGroup(child); // anything it left running in the background
      resolve({ code, signal, timedOut: false, stdout, stderr, timeout });
    });
  });
}

/** Starts a `background` block; resolves once its output shows `ready`. */
async function startBackground(block, ctx) {
  const file = path.join(ctx.dir, `background-${block.line}.sh`);
  fs.writeFileSync(file, SHELL_PRELUDE + localize(block.code, ctx.server) + '\n');
  const child = spawnBlock('sh', file, { env: ctx.env, cwd: REPO });
  child.stdin.on('error', () => {});
  // stdin stays open: an interactive client (the smoke client) runs until its input ends.
  const bg = { block, child, out: '' };
  child.stdout.on('data', (d) => (bg.out += d));
  child.stderr.on('data', (d) => (bg.out += d));
  ctx.background.push(bg);
  const ready = String(block.attrs.get('ready') || '');
  await h.waitUntil(
    () => {
      if (child.exitCode !== null) throw new Error(`${where(block)} exited early (code ${child.exitCode}):\n${bg.out}`);
      return ready ? bg.out.includes(ready) : true;
    },
    `${where(block)} to print "${ready}"`,
    60000,
  );
  return bg;
}

const where = (b) => `${b.file}:${b.line}`;

function failure(chain, r) {
  const lines = chain.map(where).join(' + ');
  const why = r.timedOut ? `timed out after ${r.timeout} ms` : `exited with code ${r.code}${r.signal ? ` (${r.signal})` : ''}`;
  return `${lines}: the \`${chain[0].info}\` block ${why}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

// ---------------------------------------------------------------------------
// The pages

const pages = docFiles().map((file) => ({ file, blocks: blocks(file).filter(runnable) }));
const noRun = pages.flatMap((p) => p.blocks.filter((b) => b.noRun !== null));

/** A page's blocks grouped into chains: a block with the `continues` blocks after it. */
function chains(list) {
  const out = [];
  for (const b of list) {
    if (b.attrs.get('continues') && out.length && !b.noRun) {
      const prev = out[out.length - 1];
      assert.equal(prev[0].lang, b.lang, `${where(b)}: continues a block of another language`);
      prev.push(b);
    } else {
      out.push([b]);
    }
  }
  return out;
}

describe('the documentation snippets', () => {
  it('are classified: every attribute known, every no-run with its reason, at most MAX_NO_RUN', (t) => {
    for (const p of pages) {
      for (const b of p.blocks) {
        assert.deepEqual(b.unknown, [], `${where(b)}: unknown attribute(s) in \`${b.info}\``);
        if (b.noRun !== null) assert.ok(b.noRun.split(/\s+/).length >= 3, `${where(b)}: no-run needs a reason`);
        if (b.attrs.get('continues')) assert.ok(!b.noRun, `${where(b)}: a continuation cannot be no-run`);
        if (b.noRun === null && !b.attrs.get('server')) {
          assert.ok(!isForbidden(b), `${where(b)}: builds or deploys (${FORBIDDEN}): mark it \`server\` or \`no-run <reason>\``);
        }
      }
    }
    const total = pages.reduce((n, p) => n + p.blocks.length, 0);
    const stoodIn = pages.flatMap((p) => p.blocks.filter((b) => b.attrs.get('server') && b.noRun === null));
    t.diagnostic(`${total} shell/JavaScript blocks; ${total - noRun.length - stoodIn.length} run, ${stoodIn.length} stood in for by the test's server, ${noRun.length} not run:`);
    for (const b of noRun) t.diagnostic(`  ${where(b)}: ${b.noRun}`);
    assert.ok(noRun.length <= MAX_NO_RUN, `${noRun.length} no-run blocks, more than ${MAX_NO_RUN}`);
    assert.ok(total - noRun.length >= 20, 'suspiciously few runnable blocks: is the extraction broken?');
  });

  it('link only to files and headings that exist (the pages, and the READMEs that link into them)', () => {
    const others = ['clients/node/README.md', 'fuzz/README.md', 'dev/bench/README.md', 'tests/js/README.md', 'docs/benchmarks.md'];
    const files = [...docFiles(), ...others].filter((f) => fs.existsSync(path.join(REPO, f)));
    const broken = files.flatMap((f) => brokenLinks(f).map((b) => `${f}:${b.line} ${b.link}: ${b.why}`));
    assert.deepEqual(broken, []);
  });

  it('include the README quickstart, run end to end', () => {
    const readme = pages.find((p) => p.file === 'README.md').blocks;
    assert.ok(readme.some((b) => b.attrs.get('server') && /cargo run/.test(b.code)), 'no `sh server` block with cargo run');
    assert.ok(readme.some((b) => b.attrs.get('background') && /smoke-socket-client/.test(b.code)), 'no background smoke client');
    assert.ok(readme.some((b) => b.attrs.get('expect-background')), 'no block checked against the smoke client');
  });

  for (const page of pages) {
    if (page.blocks.every((b) => b.noRun !== null)) continue;
    describe(page.file, () => {
      const ctx = { server: null, dir: null, env: null, background: [] };
      before(async () => {
        ctx.server = await h.startServer(ZERO_CONFIG);
        ctx.dir = snippetDir();
        // The reader's own environment (npm needs its proxy and CA settings), with the
        // binary on PATH and the smoke client pointed at the server.
        ctx.env = {
          ...process.env,
          PATH: `${path.dirname(h.BIN)}:${process.env.PATH || '/usr/bin:/bin'}`,
          WS_URL: ctx.server.url,
        };
      });
      after(async () => {
        for (const bg of ctx.background) {
          bg.child.stdin.end();
          killGroup(bg.child);
        }
        if (ctx.server) await ctx.server.stop();
        if (ctx.dir) fs.rmSync(ctx.dir, { recursive: true, force: true });
      });

      for (const chain of chains(page.blocks)) {
        const head = chain[0];
        const name = `${chain.map(where).join(' + ')} \`${head.info}\``;
        if (head.noRun !== null) {
          it(name, { skip: `no-run: ${head.noRun}` }, () => {});
        } else if (head.attrs.get('server')) {
          it(`${name}: the test's zero-configuration server stands in`, async () => {
            const res = await fetch(`${ctx.server.url}/ready`);
            assert.equal(res.status, 200);
            const tok = await fetch(`${ctx.server.url}/dev/token?sub=docs`);
            assert.equal(tok.status, 200, 'the stand-in is not in development mode');
          });
        } else if (head.attrs.get('background')) {
          it(name, async () => {
            assert.ok(!isForbidden(head), `${name}: builds or deploys; mark it \`server\` or \`no-run <reason>\``);
            await startBackground(head, ctx);
          });
        } else {
          it(name, async () => {
            assert.ok(!chain.some(isForbidden), `${name}: builds or deploys; mark it \`server\` or \`no-run <reason>\``);
            const r = await runChain(chain, ctx);
            assert.ok(!r.timedOut && r.code === 0, failure(chain, r));
            const expected = chain[chain.length - 1].attrs.get('expect-background');
            if (expected) {
              const bg = ctx.background[ctx.background.length - 1];
              assert.ok(bg, `${where(head)}: expect-background without a background block before it`);
              const id = /"id"\s*:\s*"([^"]+)"/.exec(r.stdout);
              const seen = () =>
                bg.out.split('\n').find((l) => l.includes(String(expected)) && (!id || l.includes(id[1])));
              await h.waitUntil(seen, `${where(bg.block)} to print ${expected}${id ? ` with id ${id[1]}` : ''}:\n${bg.out}`, 10000);
            }
          });
        }
      }
    });
  }
});
