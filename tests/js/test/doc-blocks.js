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

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown file: its headings' slugs (numbered when repeated). */
function anchors(file) {
  const seen = new Map();
  const out = new Set();
  let fence = null;
  for (const line of fs.readFileSync(path.join(REPO, file), 'utf8').split('\n')) {
    const f = /^\s*(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (!fence) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      continue;
    }
    if (fence) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]);
    const n = seen.get(base) || 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/**
 * Every relative link of `file` (outside code) that does not resolve: a missing file, or
 * a `#anchor` that is not a heading of its Markdown target. Resolves `[{ line, link, why }]`.
 */
function brokenLinks(file) {
  const broken = [];
  // HTML comments are not rendered: their links (placeholders for pages to come) do not count.
  const text = fs.readFileSync(path.join(REPO, file), 'utf8').replace(/<!--[\s\S]*?-->/g, (c) => c.replace(/[^\n]/g, ''));
  const lines = text.split('\n');
  let fence = null;
  lines.forEach((line, i) => {
    const f = /^\s*(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (!fence) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      return;
    }
    if (fence) return;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const link = m[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // http:, mailto:, ...
      const [target, anchor] = link.split('#');
      const resolved = target ? path.normalize(path.join(path.dirname(file), target)) : file;
      if (!fs.existsSync(path.join(REPO, resolved))) {
        broken.push({ line: i + 1, link, why: `no file ${resolved}` });
      } else if (anchor !== undefined && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) {
        broken.push({ line: i + 1, link, why: `no heading #${anchor} in ${resolved}` });
      }
    }
  });
  return broken;
}

module.exports.anchors = anchors;
module.exports.brokenLinks = brokenLinks;
