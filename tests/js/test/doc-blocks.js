'use strict';
// Reads the fenced code blocks of the user documentation (README.md and docs/*.md), with
// the attributes of their info strings, for docs-snippets.test.js.
//
// An info string is a language, then attributes:
//
//   ```sh                          run it (bash), against the test's server
//   ```js continues                run it appended to the block before it (same language)
//   ```sh server                   the command that starts the server (`cargo run`): the
//                                  test's own server, started the same way, stands in
//   ```sh background ready=<word>  start it, keep it running, wait for <word> in its output
//   ```sh expect-background=<text> run it, then the running background block must print a
//                                  line with <text> (and the first "id" this block printed)
//   ```sh timeout=<seconds>        a longer limit than the default
//   ```sh no-run <reason...>       not run; the reason is required, the test lists these

const fs = require('node:fs');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');

/** The languages the test runs, by the interpreter that runs them. */
const SHELL = new Set(['sh', 'bash', 'shell']);
const JS = new Set(['js', 'javascript']);

const KNOWN = new Set(['continues', 'server', 'background', 'ready', 'expect-background', 'timeout']);

/**
 * The documentation pages whose snippets are run: README.md and every docs/*.md but
 * docs/benchmarks.md (a lab notebook: its commands need release builds, a server's pid
 * and minutes of load; `python3 dev/bench/compare.py --size tiny` in CI runs that tool).
 */
function docFiles() {
  const docs = fs
    .readdirSync(path.join(REPO, 'docs'))
    .filter((f) => f.endsWith('.md') && f !== 'benchmarks.md')
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/** Parses an info string: `{ lang, attrs: Map, noRun: reason | null, unknown: [...] }`. */
function parseInfo(info) {
  const words = info.trim().split(/\s+/).filter(Boolean);
  const lang = (words.shift() || '').toLowerCase();
  const attrs = new Map();
  const unknown = [];
  let noRun = null;
  while (words.length) {
    const word = words.shift();
    if (word === 'no-run') {
      noRun = words.join(' ');
      break;
    }
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? true : word.slice(eq + 1);
    if (!KNOWN.has(key)) unknown.push(word);
    attrs.set(key, value);
  }
  return { lang, attrs, noRun, unknown };
}

/** Every fenced block of `file` (relative to the repository): `{ file, line, info, lang, attrs, noRun, unknown, code }`. */
function blocks(file) {
  const lines = fs.readFileSync(path.join(REPO, file), 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const body = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = new RegExp(`^\\s*${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
      if (close.test(lines[j])) break;
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
    }
    out.push({ file, line: i + 1, info: info.trim(), ...parseInfo(info), code: body.join('\n') });
    i = j;
  }
  return out;
}

const runnable = (b) => SHELL.has(b.lang) || JS.has(b.lang);

module.exports = { REPO, SHELL, JS, docFiles, blocks, parseInfo, runnable };
