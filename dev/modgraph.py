#!/usr/bin/env python3
"""How the top-level modules of `src/` stand on each other, and where files and
functions grow too long.

    python3 dev/modgraph.py            # the graph, its loops, long files and functions
    python3 dev/modgraph.py --dot      # the graph in Graphviz's dot language

A module is a top-level file or folder of `src/` (`src/history/redis.rs` belongs to
`history`). An edge `a -> b` is a `crate::b` path anywhere in `a`'s code outside its test
modules (`#[cfg(test)]` items and `tests.rs` files), `use` lines included. Loops are the
strongly connected components of more than one module. Lengths count lines: a file's
whole, a function's from its `fn` line to its closing brace (test code excluded).
"""
import argparse
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SRC = os.path.join(ROOT, "src")
MAX_FILE_LINES = 400
MAX_FN_LINES = 80

CRATE_PATH = re.compile(r"\bcrate::(?:\{([^}]*)\}|([a-z_][a-z0-9_]*))")
FN_START = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z0-9_]+)")


def module_of(path):
    rel = os.path.relpath(path, SRC)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".rs") else head


def strip_comments_and_strings(line):
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    return line.split("//", 1)[0]


def code_lines(text):
    """The file's lines with test items blanked: a `#[cfg(test)]` item runs to the end of
    its braces (or to its `;` for a one-line `mod tests;`)."""
    lines = text.split("\n")
    out = []
    skipping = False
    depth = 0
    opened = False
    for line in lines:
        code = strip_comments_and_strings(line)
        if not skipping and code.strip().startswith("#[cfg(test)]"):
            skipping, depth, opened = True, 0, False
            out.append("")
            continue
        if skipping:
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            out.append("")
            if (opened and depth <= 0) or (not opened and code.strip().endswith(";")):
                skipping = False
            continue
        out.append(code)
    return out


def rust_files():
    for base, _, files in os.walk(SRC):
        for name in sorted(files):
            if name.endswith(".rs") and name != "tests.rs":
                yield os.path.join(base, name)


def edges_and_lengths():
    edges = defaultdict(set)
    modules = set()
    long_files, long_fns = [], []
    for path in rust_files():
        module = module_of(path)
        if module in ("main", "lib"):
            continue
        modules.add(module)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        total = text.count("\n")
        if total > MAX_FILE_LINES:
            long_files.append((total, os.path.relpath(path, ROOT)))
        lines = code_lines(text)
        for code in lines:
            for group, single in CRATE_PATH.findall(code):
                names = [single] if single else [n.strip().split("::")[0] for n in group.split(",")]
                for name in names:
                    if name and name not in ("self",) and name != module:
                        edges[module].add(name)
        long_fns.extend(long_functions(lines, os.path.relpath(path, ROOT)))
    for module in list(edges):
        edges[module] = {m for m in edges[module] if m in modules}
    return modules, edges, long_files, long_fns


def long_functions(lines, rel):
    found = []
    i = 0
    while i < len(lines):
        m = FN_START.match(lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            depth += lines[j].count("{") - lines[j].count("}")
            opened = opened or "{" in lines[j]
            if not opened and lines[j].rstrip().endswith(";"):
                break  # a declaration without a body
            if opened and depth <= 0:
                break
            j += 1
        length = j - i + 1
        if opened and length > MAX_FN_LINES:
            found.append((length, f"{rel}:{i + 1}", m.group(1)))
        i += 1
    return found


def loops(modules, edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dot", action="store_true", help="print the graph in dot and stop")
    args = parser.parse_args()
    modules, edges, long_files, long_fns = edges_and_lengths()
    if args.dot:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return
    print(f"{len(modules)} top-level modules; edges (module -> what it uses):")
    for m in sorted(modules):
        print(f"  {m:<12} -> {', '.join(sorted(edges.get(m, ()))) or '-'}")
    found = loops(modules, edges)
    print(f"\nloops: {len(found)}")
    for comp in found:
        print(f"  {len(comp)} modules: {', '.join(comp)}")
    print(f"\nfiles over {MAX_FILE_LINES} lines: {len(long_files)}")
    for n, rel in sorted(long_files, reverse=True):
        print(f"  {n:>5}  {rel}")
    print(f"\nfunctions over {MAX_FN_LINES} lines: {len(long_fns)}")
    for n, at, name in sorted(long_fns, reverse=True):
        print(f"  {n:>5}  {at}  {name}")


if __name__ == "__main__":
    main()
