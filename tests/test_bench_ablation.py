"""bench/efficient_ablation.py's table keeps the rows of every call into one --out."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench" / "efficient_ablation.py"


def test_finished_runs_of_earlier_calls_stay_in_the_table(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_ablation", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name, seed, knn in (("baseline", 1, 46.6), ("baseline", 0, 46.0), ("F1-CLR", 0, 46.4),
                            ("F1-CLR+SPL", 0, 45.8)):
        run = tmp_path / bench.run_name("simclr", name, seed)
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"knn_top1": knn}))
    (tmp_path / bench.run_name("simclr", "all three", 0)).mkdir()  # unfinished: no results
    cells = bench.finished_cells(tmp_path, ["simclr", "byol"])
    assert bench.run_name("simclr", "F1-CLR+SPL", 0) == "simclr_F1-CLR_SPL_s0"
    assert {k: [r["knn_top1"] for r in v] for k, v in cells.items()} == {
        ("simclr", "baseline"): [46.0, 46.6],  # by seed
        ("simclr", "F1-CLR"): [46.4],  # not F1-CLR+SPL's folder, whose name starts alike
        ("simclr", "F1-CLR+SPL"): [45.8]}
