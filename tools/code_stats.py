#!/usr/bin/env python3
"""Largest Rust source files and functions of the workspace (for refactoring reports).

    python3 tools/code_stats.py [--top 10] [ROOT]

Counts lines of `crates/*/src/**/*.rs` (tests and benches left out). A function is measured
from its `fn` line to the line of its matching closing brace (braces inside strings, chars and
comments are skipped); nested functions count inside their parent and on their own.
"""
import argparse
import pathlib
import re

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+|async\s+|unsafe\s+)*fn\s+(\w+)")


def strip(line, in_block):
    """The line without string/char literals and comments; whether a block comment is open."""
    out, i = [], 0
    while i < len(line):
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 2, False
        elif line.startswith("//", i):
            break
        elif line.startswith("/*", i):
            in_block, i = True, i + 2
        elif line[i] == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
        elif line[i] == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
        else:
            out.append(line[i])
            i += 1
    return "".join(out), in_block


def functions(path):
    """(line count, [(lines, path, name)]) of the file's functions with a body."""
    lines = path.read_text().splitlines()
    found, stack, depth, in_block, pending, nest = [], [], 0, False, None, 0
    for n, raw in enumerate(lines, 1):
        code, in_block = strip(raw, in_block)
        m = FN.match(code)
        if m:
            pending, nest = (m.group(4), n), 0
        for ch in code:
            if ch in "([":
                nest += 1
            elif ch in ")]":
                nest -= 1
            elif ch == ";" and pending and nest == 0:
                pending = None  # a declaration without a body (`[u8; 4]` is nested)
            elif ch == "{":
                if pending:
                    stack.append((pending[0], pending[1], depth))
                    pending = None
                depth += 1
            elif ch == "}":
                depth -= 1
                while stack and depth == stack[-1][2]:
                    name, start, _ = stack.pop()
                    found.append((n - start + 1, str(path), name))
    return len(lines), found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=".")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    root = pathlib.Path(args.root)
    files, fns = [], []
    for path in sorted(root.glob("crates/*/src/**/*.rs")):
        count, found = functions(path)
        files.append((count, str(path.relative_to(root))))
        fns.extend((n, str(pathlib.Path(where).relative_to(root)), name) for n, where, name in found)
    print(f"largest files (lines), of {len(files)} in crates/*/src:")
    for count, name in sorted(files, reverse=True)[: args.top]:
        print(f"  {count:5}  {name}")
    print("largest functions (lines):")
    for n, where, name in sorted(fns, reverse=True)[: args.top]:
        print(f"  {n:5}  {name}  ({where})")


if __name__ == "__main__":
    main()
