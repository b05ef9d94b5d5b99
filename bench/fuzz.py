"""Fuzz the dataset file: thousands of mutants, each opened, verified, read and loaded in a
worker process under a timeout, so that a crash or a hang is counted instead of stopping the run.

    python bench/fuzz.py --mutants 5000 [--workers N] [--timeout 60] [--seed 0]

Mutants and outcomes are `jessl.data.fuzz`'s (damage: flips, overwrites, insertions, deletions,
truncations, a record's name; forged: index and meta fields with recomputed checksums, JPEG
frame headers). Printed: the counts of each outcome per kind, then the four that must be 0:

  crashes        a worker died (segfault, abort, out of memory) on a mutant
  hangs          a mutant took longer than --timeout seconds
  undocumented   an exception other than FormatError / RecordError / LoaderError
  silent         damage that `verify` passed and that read differently from the original

The exit status is 1 when any of them is not 0. Each mutant is a pure function of its seed,
so `--seed S --mutants 1` replays mutant S.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MUST_BE_ZERO = ("crash", "hang", "undocumented", "silent")


def worker(bases: list[str], folder: str) -> None:
    """Read seeds from stdin; for each, write the mutant and print its outcome as JSON."""
    from jessl.data import fuzz
    mutant = Path(folder) / f"mutant-{os.getpid()}.jessl"
    originals = [Path(b) for b in bases]
    contents = [p.read_bytes() for p in originals]
    for line in sys.stdin:
        seed = int(line)
        k = seed % len(originals)
        kind, data = fuzz.mutate(contents[k], seed)
        mutant.write_bytes(data)
        result = fuzz.outcome(originals[k], mutant, kind)
        print(json.dumps({"seed": seed, "kind": kind, "outcome": result}), flush=True)


class Worker:
    """One worker process; `run(seed)` -> its outcome, "crash: ..." or "hang: ..."."""

    def __init__(self, bases, folder, timeout: float):
        self.args = [sys.executable, __file__, "--worker", ",".join(map(str, bases)), folder]
        self.timeout = timeout
        self.proc = None

    def start(self):
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def run(self, seed: int) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(f"{seed}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._restart(seed, "crash: the worker had died")
        if not self.selector.select(self.timeout):
            self.proc.kill()
            return self._restart(seed, f"hang: no outcome in {self.timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return self._restart(seed, f"crash: worker exited with status {code}")
        return json.loads(line)

    def _restart(self, seed: int, why: str) -> dict:
        self.close()
        return {"seed": seed, "kind": "?", "outcome": why}

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.selector.close()
            self.proc = None


def campaign(mutants: int, workers: int, timeout: float, first_seed: int, log=print) -> dict:
    from jessl.data.fuzz import base_files
    results = []
    with tempfile.TemporaryDirectory(prefix="jessl-fuzz-") as folder:
        bases = base_files(folder)
        seeds = iter(range(first_seed, first_seed + mutants))
        lock = threading.Lock()

        def loop():
            w = Worker(bases, folder, timeout)
            try:
                while True:
                    with lock:
                        seed = next(seeds, None)
                    if seed is None:
                        return
                    r = w.run(seed)
                    with lock:
                        results.append(r)
                        if len(results) % 500 == 0:
                            log(f"  {len(results):,} of {mutants:,} mutants", file=sys.stderr)
            finally:
                w.close()

        threads = [threading.Thread(target=loop) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return summarize(results)


def summarize(results: list[dict]) -> dict:
    by_kind = collections.defaultdict(collections.Counter)
    failures = collections.defaultdict(list)
    for r in results:
        category = r["outcome"].split(":")[0]
        by_kind[r["kind"]][category] += 1
        if category in MUST_BE_ZERO:
            failures[category].append(r)
    return {"mutants": len(results), "by_kind": {k: dict(v) for k, v in by_kind.items()},
            **{c: len(failures[c]) for c in MUST_BE_ZERO},
            "examples": {c: failures[c][:5] for c in MUST_BE_ZERO if failures[c]}}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1].split(","), argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one mutant may take before it counts as a hang (the "
                        "first of each worker includes its imports)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first mutant")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    s = campaign(args.mutants, args.workers, args.timeout, args.seed)
    s["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"{s['mutants']:,} mutants in {s['seconds']:.0f} s ({args.workers} workers)")
        for kind, counts in sorted(s["by_kind"].items()):
            print(f"  {kind:<10} " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
        print(", ".join(f"{c}es {s[c]}" if c == "crash" else f"{c}s {s[c]}" if c == "hang"
                        else f"{c} {s[c]}" for c in MUST_BE_ZERO))
        for c, examples in s.get("examples", {}).items():
            for e in examples:
                print(f"  {c}: seed {e['seed']} ({e['kind']}): {e['outcome'][:300]}")
    return 1 if any(s[c] for c in MUST_BE_ZERO) else 0


if __name__ == "__main__":
    sys.exit(main())
