#!/usr/bin/env python3
"""Print the end-to-end tests' times from the file the harness writes (MULTIBRIDGE_TEST_TIMES):
per test the time its devnets ran and the time they waited for the machine (a test that runs
alone keeps the others waiting), and the mean time of each devnet start phase."""
import collections
import sys

path = sys.argv[1]
ran = collections.defaultdict(float)
waited = collections.defaultdict(float)
alone = set()
phases = collections.defaultdict(list)
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:
    print(f"test times: no {path} (no devnet ran)")
    sys.exit(0)
for line in lines:
    parts = line.split("\t")
    if parts[0] == "devnet" and len(parts) == 5:
        _, test, w, r, a = parts
        ran[test] += float(r)
        waited[test] += float(w)
        if a == "true":
            alone.add(test)
    elif parts[0] == "phase" and len(parts) == 4:
        phases[parts[2]].append(float(parts[3]))

rows = sorted(ran.items(), key=lambda kv: -kv[1])
total_ran = sum(ran.values())
total_waited = sum(waited.values())
print()
print(f"end-to-end tests: {len(rows)} with a devnet, {total_ran / 60:.1f} min of devnet time, "
      f"{total_waited / 60:.1f} min waiting for the machine, {len(alone)} alone")
print(f"{'ran s':>8} {'waited s':>9}  test")
for test, r in rows:
    mark = "  (alone)" if test in alone else ""
    print(f"{r:8.1f} {waited[test]:9.1f}  {test}{mark}")
if phases:
    print()
    print("devnet start phases (mean / max s over all devnets):")
    for phase, values in phases.items():
        print(f"  {phase:8} {sum(values) / len(values):6.2f} / {max(values):6.2f}  ({len(values)} devnets)")
