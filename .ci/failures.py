#!/usr/bin/env python3
"""Print why each failed test failed, last, where a shortened CI log still shows it: a failing
test's captured output (relay logs dumped for the reader) can push its panic message into the
part of a long log that gets cut. Reads the log of `cargo test` given as the argument."""
import re
import sys

LINES_AFTER = 6
WIDTH = 600

try:
    lines = open(sys.argv[1], errors="replace").read().splitlines()
except FileNotFoundError:
    sys.exit(0)

test = None
digest = []
for i, line in enumerate(lines):
    header = re.match(r"^---- (\S+) stdout ----$", line)
    if header:
        test = header.group(1)
        continue
    if "panicked at" in line:
        where = test or "?"
        message = [l[:WIDTH] for l in lines[i + 1 : i + 1 + LINES_AFTER]]
        ends = ("note:", "---- ", "stack backtrace", "failures:", "test result:")
        cut = next((k for k, l in enumerate(message) if l.startswith(ends)), None)
        message = message[:cut]
        while message and not message[-1].strip():
            message.pop()
        digest.append((where, line[:WIDTH], message))

if digest:
    print(f"why the {len(digest)} failing test(s) failed (each panic and what it said):")
    for where, line, message in digest:
        print(f"  {where}")
        print(f"    {line.strip()}")
        for l in message:
            print(f"      {l}")
