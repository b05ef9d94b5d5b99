"""The loader's cold start: seconds to the first batch of a fresh install (empty numba cache).

Each run is a fresh Python process whose NUMBA_CACHE_DIR is an empty temporary folder, as on a
machine where jessl was just installed; a warm run reuses the last cold run's cache. Each
repeat runs cold twice, alternating: as shipped (a second process compiles the passes, then
the sampler, `jessl.data.warm`) and alone (the reference: one process compiles everything). Printed per
run: seconds to import the loader, seconds from building the Loader to its first batch, and a
checksum of that batch (the same seed must give the same bytes before and after a change).

    python bench/loader_cold_start.py                        # the quickstart's digits, 32 px
    python bench/loader_cold_start.py --data imagenet256.jessl --views byol --batch-size 64

Default data: the quickstart's training file (scikit-learn's 8x8 digits, written once to a temp
folder) with the quickstart's views and batch (simclr_cifar, 128).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
start = time.perf_counter()
from jessl.data.loader import Loader
if sys.argv[5] == "alone":  # the reference: no second process, everything compiled here
    import jessl.data.warm
    jessl.data.warm.start = lambda *args: False
imported, cpu0 = time.perf_counter(), cpu()
loader = Loader(sys.argv[1], int(sys.argv[3]), sys.argv[2], seed=0, num_threads=int(sys.argv[4]))
batch = next(iter(loader))
first, cpu1 = time.perf_counter(), cpu()
digest = hashlib.sha256()
for view in batch.views:
    digest.update(view.numpy().tobytes())
print(json.dumps({"import_s": imported - start, "first_batch_s": first - imported,
                  "first_batch_cpu_s": cpu1 - cpu0,
                  "sha256": digest.hexdigest()[:16]}))
"""


def child(data: str, views: str, batch_size: int, threads: int, cache: str,
          mode: str = "warm") -> dict:
    """One fresh process with NUMBA_CACHE_DIR=cache; its timings and checksum. mode "alone":
    without the second process that compiles the passes and the sampler (jessl.data.warm)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", CHILD, data, views, str(batch_size),
                          str(threads), mode], env=env, capture_output=True, text=True, check=True,
                         cwd=ROOT)  # `python -c` puts the working folder first on sys.path
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr.strip()
    return result


def report(label: str, run: dict) -> None:
    """One run's line, and what it wrote on stderr (the compile notice on a cold cache)."""
    print(f"{label}: import {run['import_s']:.2f} s, first batch {run['first_batch_s']:.2f} s "
          f"({run['first_batch_cpu_s']:.2f} s CPU), sha256 {run['sha256']}", flush=True)
    if run["stderr"]:
        print("  stderr: " + run["stderr"].replace("\n", "\n  "))


def digits_file(folder: Path) -> str:
    """The quickstart's training file, written once."""
    sys.path.insert(0, str(ROOT))
    from jessl.quickstart import write_digits
    return str(write_digits(folder)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset file (default: the quickstart's digits)")
    ap.add_argument("--views", default="simclr_cifar", help="view preset (default simclr_cifar)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="cold runs (median reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jessl-cold-") as tmp:
        data = args.data or digits_file(Path(tmp))
        cold, alone = [], []
        for r in range(args.repeats):  # alternating, so drift of the machine hits both alike
            for mode, runs in (("warm", cold), ("alone", alone))[::1 if r % 2 == 0 else -1]:
                cache = tempfile.mkdtemp(prefix=f"numba{r}{mode}-", dir=tmp)
                runs.append(child(data, args.views, args.batch_size, args.threads, cache, mode))
                report(f"cold run {r} ({'second process' if mode == 'warm' else 'alone'})",
                       runs[-1])
        warm = child(data, args.views, args.batch_size, args.threads, cache)
        report("warm run  ", warm)
    summary = {"views": args.views, "batch_size": args.batch_size, "threads": args.threads,
               "cold_first_batch_s": statistics.median(c["first_batch_s"] for c in cold),
               "cold_first_batch_cpu_s":
                   statistics.median(c["first_batch_cpu_s"] for c in cold),
               "cold_import_s": statistics.median(c["import_s"] for c in cold),
               "warm_first_batch_s": warm["first_batch_s"], "warm_import_s": warm["import_s"],
               "cold_alone_first_batch_s": statistics.median(c["first_batch_s"] for c in alone),
               "sha256": sorted({c["sha256"] for c in cold + alone} | {warm["sha256"]})}
    print(json.dumps(summary) if args.json else
          f"median of {args.repeats} cold runs: first batch {summary['cold_first_batch_s']:.2f} s"
          f" ({summary['cold_first_batch_cpu_s']:.2f} s CPU)"
          f" (+ import {summary['cold_import_s']:.2f} s); without the second process "
          f"{summary['cold_alone_first_batch_s']:.2f} s "
          f"({summary['cold_alone_first_batch_s'] / summary['cold_first_batch_s']:.2f}x); "
          f"warm {warm['first_batch_s']:.2f} s; checksums {', '.join(summary['sha256'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
