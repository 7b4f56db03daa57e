"""Summarise a py-spy raw profile: where the samples go, by function (self and inclusive).

.venv/bin/python benchmarks/profile_summary.py benchmarks/results/profile_throughput.txt [--filter herald]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only count inclusive time of frames containing this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    with open(args.path) as fh:
        lines = fh.readlines()
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        if frames[-1].startswith(("EpollSelector.select", "Condition.wait", "Queue.get", "_worker (concurrent")):
            own["(idle)"] += count
            continue
        own[frames[-1]] += count
        for f in set(frames):
            if args.filter in f:
                inclusive[f] += count
    print(f"{total} samples")
    print("-- threads")
    for name, n in threads.most_common(8):
        print(f"{n / total:6.1%}  {name}")
    print("-- self")
    for name, n in own.most_common(args.top):
        print(f"{n / total:6.1%}  {name}")
    print("-- inclusive")
    for name, n in inclusive.most_common(args.top):
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
