'use strict';
// Every environment variable the server reads is documented: in docs/configuration.md
// (a row of its tables) and in .env.example. And the other way round: every variable in
// the tables of docs/configuration.md is one the server reads, so no stale row survives.
//
// What "the server reads" means is found in src/, outside tests:
// - the configuration module (src/config/) reads variables through a lookup, `get("NAME")`,
//   and through parsers that take the name as a string: `parse_num(get, "NAME", ..)`,
//   `parse_bounded`, `parse_bool`, `parse_rate(get, ("NAME", n), "BURST_NAME", ..)`,
//   `positive_ms`, `target(get, "URL_NAME", "TIMEOUT_NAME", ..)`: every string literal that
//   looks like a variable name (capitals and an underscore) or is passed to `get(..)`;
// - anywhere in src/: `std::env::var("NAME")` and `std::env::var_os("NAME")`.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');

/** Rust source without its tests: `tests.rs` files and the `#[cfg(test)] mod ...` at the end of a file. */
function rustSources(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...rustSources(full));
    else if (entry.name.endsWith('.rs') && entry.name !== 'tests.rs') {
      const text = fs.readFileSync(full, 'utf8');
      const cut = text.search(/#\[cfg\(test\)\]\s*mod\s+\w+/);
      out.push({ file: path.relative(REPO, full), text: cut < 0 ? text : text.slice(0, cut) });
    }
  }
  return out;
}

/** Line comments and doc comments removed, so prose naming a variable does not count. */
const code = (text) => text.replace(/\/\/[^\n]*/g, '');

function variablesRead() {
  const found = new Map(); // name -> first file
  const add = (name, file) => {
    if (!found.has(name)) found.set(name, file);
  };
  for (const { file, text } of rustSources(path.join(REPO, 'src'))) {
    const src = code(text);
    for (const m of src.matchAll(/env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)/g)) add(m[1], file);
    if (file.startsWith(`src${path.sep}config${path.sep}`)) {
      for (const m of src.matchAll(/\bget\(\s*"([A-Z][A-Z0-9_]*)"\s*\)/g)) add(m[1], file);
      // A parser handed the lookup and a name: `parse_port(&get, "PORT")`.
      for (const m of src.matchAll(/\(\s*&?get\s*,\s*"([A-Z][A-Z0-9_]*)"/g)) add(m[1], file);
      // Names handed to the parsers; error messages are longer strings, never a bare name.
      for (const m of src.matchAll(/"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"/g)) add(m[1], file);
    }
  }
  // The development defaults are constants, not variables.
  for (const name of [...found.keys()]) if (name.startsWith('DEV_')) found.delete(name);
  return found;
}

/** Variables named in the first column of the tables of docs/configuration.md. */
function documentedInTables(text) {
  const names = new Set();
  for (const line of text.split('\n')) {
    const m = /^\|([^|]*)\|/.exec(line);
    if (!m) continue;
    for (const v of m[1].matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(v[1]);
  }
  return names;
}

/** Variables in .env.example: `NAME=` lines, commented out or not. */
function inEnvExample(text) {
  const names = new Set();
  for (const m of text.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)) names.add(m[1]);
  return names;
}

describe('the configuration documentation', () => {
  const read = variablesRead();
  const docs = fs.readFileSync(path.join(REPO, 'docs', 'configuration.md'), 'utf8');
  const tables = documentedInTables(docs);
  const example = inEnvExample(fs.readFileSync(path.join(REPO, '.env.example'), 'utf8'));

  it('finds the variables the server reads (the extraction itself works)', (t) => {
    for (const name of ['PORT', 'HOST', 'DEBUG', 'API_RATE_BURST', 'HANDSHAKE_BURST_PER_IP', 'WEBHOOK_TIMEOUT_MS', 'REDIS_REQUIRE_REPLICA', 'MALLOC_ARENA_MAX']) {
      assert.ok(read.has(name), `the scan of src/ missed ${name}: fix variablesRead()`);
    }
    assert.ok(read.size >= 50, `only ${read.size} variables found in src/`);
    t.diagnostic(`${read.size} variables read by the server: ${[...read.keys()].sort().join(' ')}`);
  });

  it('documents every variable the server reads in a table of docs/configuration.md', () => {
    const missing = [...read].filter(([name]) => !tables.has(name)).map(([n, f]) => `${n} (read in ${f})`);
    assert.deepEqual(missing, [], 'add a row to docs/configuration.md for each');
  });

  it('lists every variable the server reads in .env.example', () => {
    const missing = [...read].filter(([name]) => !example.has(name)).map(([n, f]) => `${n} (read in ${f})`);
    assert.deepEqual(missing, [], 'add a `# NAME=default` line to .env.example for each');
  });

  it('documents no variable the server does not read', () => {
    const stale = [...tables].filter((name) => !read.has(name));
    assert.deepEqual(stale, [], 'rows of docs/configuration.md for variables the server does not read');
  });
});
