#!/usr/bin/env python3
"""The heap of a node at its peak, by owner: who asked for each byte, and what for.

Input: heaptrack's peak consumers with every backtrace
(`heaptrack_print -f REC -p 1 -a 0 -T 0 -l 0 -n 100000 -s 100000`). Each
backtrace is charged to its innermost frame in a crate that owns memory on its
own account (engineioxide, socketioxide, hyper, parloir, ...; tokio, std and
the collections they use are means, not owners), and labelled with what the
frames between that owner and the allocation build: a spawned task, a channel
block, a hash map...

Frames are told apart by their source paths: a crate from the registry by its
directory (`.../engineioxide-0.17.9/src/...`), parloir by a relative path that
is one of its own files (cargo compiles workspace members with relative paths).

usage: heap-owners.py [--sockets N] [--top K] [--repo DIR] PEAKS
With --sockets, figures are per socket (the peak divided by N): right for what
grows with sockets, a small share of what does not (runtime, pools, caches).
"""

import argparse
import collections
import pathlib
import re
import subprocess
import sys

# Crates that own what they allocate, by their registry names; their `-core`
# halves count as the crate.
OWNERS = {
    "engineioxide": "engineioxide",
    "engineioxide-core": "engineioxide",
    "socketioxide": "socketioxide",
    "socketioxide-core": "socketioxide",
    "socketioxide-parser-common": "socketioxide",
    "socketioxide-redis": "socketioxide-redis",
    "tokio-tungstenite": "tungstenite",
    "tungstenite": "tungstenite",
    "hyper": "hyper",
    "hyper-util": "hyper",
    "axum": "axum",
    "tower": "tower",
    "tower-http": "tower",
    "sqlx-core": "sqlx",
    "sqlx-sqlite": "sqlx",
    "sqlx-postgres": "sqlx",
    "libsqlite3-sys": "sqlite",
    "tracing-subscriber": "tracing",
    "opentelemetry_sdk": "opentelemetry",
    "fred": "fred",
    "governor": "governor",
    "quick_cache": "quick_cache",
    "metrics-exporter-prometheus": "metrics",
    "metrics-util": "metrics",
}

# What the frames under an owner build, by the crate and file they are in.
KINDS = [
    (r"tokio-[^/]+/src/(runtime/task|task/spawn|runtime/scheduler|runtime/handle)", "spawned task (future)"),
    (r"tokio-[^/]+/src/sync/mpsc", "mpsc channel"),
    (r"tokio-[^/]+/src/sync/watch", "watch channel"),
    (r"tokio-[^/]+/src/sync/", "tokio sync"),
    (r"tokio-util-[^/]+/src/sync/cancellation_token", "cancellation token"),
    (r"tokio-[^/]+/src/(time|runtime/time)", "timer"),
    (r"hashbrown-|/std/src/collections/hash", "hash map"),
    (r"/bytes-[^/]+/", "byte buffer"),
    (r"/smallvec-", "small vec"),
    (r"/alloc/src/sync\.rs", "Arc"),
    (r"/alloc/src/string\.rs|/alloc/src/str\.rs", "string"),
    (r"/alloc/src/(raw_vec|vec)", "vec"),
    (r"/alloc/src/boxed", "box"),
]

REGISTRY = re.compile(r"/registry/src/[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/")
SIZE = re.compile(r"^\s*([\d.]+)([KMGT]?)B?\s")
UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def own_files(repo: pathlib.Path) -> set[str]:
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "src"], capture_output=True, text=True, check=False
    )
    return {line for line in listed.stdout.splitlines() if line.endswith(".rs")}


def size_of(line: str) -> float:
    match = SIZE.match(line)
    return float(match.group(1)) * UNITS[match.group(2)] if match else 0.0


def backtraces(lines):
    """(bytes, [(function, path)]) for every backtrace, innermost frame first."""
    site: list[tuple[str, str]] = []
    current: list[tuple[str, str]] | None = None
    nbytes = 0.0
    in_site = False
    for raw in lines:
        line = raw.rstrip("\n")
        if " peak memory consumed over " in line:
            if current is not None:
                yield nbytes, site + current
                current = None
            site, in_site = [], True
            continue
        if " consumed over " in line and line.endswith("from:"):
            if current is not None:
                yield nbytes, site + current
            nbytes, current, in_site = size_of(line), [], False
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("in "):
            continue
        frames = site if in_site else current
        if frames is None:
            continue
        if stripped.startswith("at "):
            if frames:
                frames[-1] = (frames[-1][0], stripped[3:])
        else:
            frames.append((stripped, ""))
    if current is not None:
        yield nbytes, site + current


def owner_of(path: str, ours: set[str]) -> str | None:
    match = REGISTRY.search(path)
    if match:
        return OWNERS.get(match.group(1))
    file = path.rsplit(":", 1)[0]
    return "parloir" if file in ours else None


def classify(frames, ours):
    """(owner, where, kind) of one backtrace, innermost frame first."""
    for i, (function, path) in enumerate(frames):
        owner = owner_of(path, ours)
        if owner is None:
            continue
        # The generic frame nearest the owner says what it built (a task
        # whose future is a Box, say, rather than the Box itself).
        kind = next(
            (k for _, inner in reversed(frames[:i]) for pattern, k in KINDS if re.search(pattern, inner)),
            "other",
        )
        match = REGISTRY.search(path)
        where = path[match.end() :] if match else path
        crate = match.group(1) if match else "parloir"
        return owner, f"{crate} {where} {function}", kind
    kind = next(
        (k for _, p in frames for pattern, k in KINDS if re.search(pattern, p)), "other"
    )
    return "runtime, std, other", "-", kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peaks")
    parser.add_argument("--sockets", type=int, default=0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--repo", default=str(pathlib.Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    ours = own_files(pathlib.Path(args.repo))

    by_owner: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[tuple[str, str]] = collections.Counter()
    by_place: collections.Counter[tuple[str, str, str]] = collections.Counter()
    total = 0.0
    with open(args.peaks, encoding="utf-8", errors="replace") as lines:
        for nbytes, frames in backtraces(lines):
            owner, where, kind = classify(frames, ours)
            by_owner[owner] += nbytes
            by_kind[(owner, kind)] += nbytes
            by_place[(owner, kind, where)] += nbytes
            total += nbytes
    if not total:
        sys.exit(f"{args.peaks}: no backtraces")

    per = args.sockets or 1
    unit = "B/socket" if args.sockets else "bytes"
    head = f"heap at peak: {total / 1e6:.1f} MB"
    if args.sockets:
        head += f", {total / per:.0f} B per socket ({args.sockets} sockets)"
    print(head)
    print(f"\n{'owner':<22} {unit:>10}  share")
    for owner, nbytes in by_owner.most_common():
        print(f"{owner:<22} {nbytes / per:>10.0f}  {nbytes * 100 / total:5.1f} %")
    print(f"\n{'owner':<22} {'kind':<24} {unit:>10}")
    for (owner, kind), nbytes in by_kind.most_common():
        if nbytes / total >= 0.002:
            print(f"{owner:<22} {kind:<24} {nbytes / per:>10.0f}")
    print(f"\n{unit:>10}  {'owner':<16} {'kind':<24} where (innermost frame of the owner)")
    for (owner, kind, where), nbytes in by_place.most_common(args.top):
        print(f"{nbytes / per:>10.0f}  {owner:<16} {kind:<24} {where[:100]}")


if __name__ == "__main__":
    main()
