"""`jessl sweep`: grid expansion and run names, study files, and sweeps of tiny real runs:
killed and restarted, N local processes sharing the cores, a SLURM array through submitit's
local executor with one task preempted and requeued."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from jessl.studies.grid import expand_grid, parse_grid_arg, run_name, seed_list
from jessl.studies.study import Study, load_study
from jessl.studies.local import gpu_for_slot, threads_per_run, visible_gpus
from jessl.studies.sweep import MANIFEST, SweepError, read_manifest, run_sweep
from tests.train.conftest import colour_images, write_file
from tests.train.test_submit import wait_for

ROOT = Path(__file__).resolve().parents[1]


# --- grid and names (no training) -----------------------------------------------------------

def test_grid_is_the_cartesian_product_first_key_slowest_seed_fastest():
    points = expand_grid([("optim.lr", [0.3, 0.6]), ("data.batch_size", [64, 256])],
                         seeds=[0, 1])
    assert len(points) == 8
    assert [tuple(p.overrides.values()) for p in points[:4]] == [
        (0.3, 64, 0), (0.3, 64, 1), (0.3, 256, 0), (0.3, 256, 1)]
    assert points[0].name == "lr=0.3_batch_size=64_seed=0"
    assert points[-1].override_args() == ["optim.lr=0.6", "data.batch_size=256", "train.seed=1"]
    assert expand_grid([])[0].name == "base"  # no grid: the base config alone


def test_names_are_safe_unique_and_short():
    # two keys share a field name: both spelled out; method.name reads as "method"
    points = expand_grid([("optim.lr", [0.1]), ("probe.lr", [0.2]),
                          ("method.name", ["instance_simclr"])])
    assert points[0].name == "optim.lr=0.1_probe.lr=0.2_method=instance_simclr"
    # unsafe characters are replaced and a hash keeps the two apart
    odd = expand_grid([("data.train", ["a/b.jessl", "a b.jessl", "a-b.jessl"])])
    names = [p.name for p in odd]
    assert len(set(names)) == 3
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789._=+-") for n in names)
    assert names[2] == "train=a-b.jessl" and names[0].startswith("train=a-b.jessl-")
    long = run_name({"model.projector": "-".join(["2048"] * 40)})
    assert len(long) <= 96 and long != run_name({"model.projector": "-".join(["2048"] * 41)})
    assert run_name({"eval.baseline": True, "model.cifar_stem": None}) == \
        "baseline=true_cifar_stem=none"


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="given twice"):
        expand_grid([("optim.lr", [0.1, 0.1])])
    with pytest.raises(ValueError, match="no values"):
        expand_grid([("optim.lr", [])])
    with pytest.raises(ValueError, match="not both"):
        expand_grid([("train.seed", [0, 1])], seeds=[0])
    assert parse_grid_arg("optim.lr=0.3, 0.6") == ("optim.lr", ["0.3", "0.6"])
    assert parse_grid_arg("--model.projector=[2048-128, '512,128']") == \
        ("model.projector", ["2048-128", "512,128"])
    with pytest.raises(ValueError, match="section.field=V1,V2"):
        parse_grid_arg("optim.lr")
    assert seed_list(3) == [0, 1, 2] and seed_list([5, 7]) == [5, 7]
    with pytest.raises(ValueError):
        seed_list(0)


def test_study_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_text("train: {epochs: 3}\n")
    study = tmp_path / "s.yaml"
    study.write_text("config: recipes/base.yaml\noverrides: {optim.lr: 0.5}\n"
                     "grid: {data.batch_size: [64, 128]}\nseeds: 2\nmetric: online\n"
                     "x: data.batch_size\nclaim: free text\n")
    s = load_study(study)
    assert s.config == {"train": {"epochs": 3}} and s.overrides == ["optim.lr=0.5"]
    assert s.grid == [("data.batch_size", [64, 128])] and s.seeds == [0, 1]
    assert (s.metric, s.x, s.y) == ("online", "data.batch_size", None)
    study.write_text("grid: {optim.lr: [1]}\nmetrics: knn\n")
    with pytest.raises(ValueError, match=r"s.yaml: unknown key\(s\) \['metrics'\]"):
        load_study(study)
    study.write_text("metric: accuracy\n")
    with pytest.raises(ValueError, match="not one of knn, linear, online, rankme"):
        load_study(study)


def test_threads_split_the_cores():
    assert threads_per_run(1, 8) == 8 and threads_per_run(3, 8) == 2 and threads_per_run(4, 2) == 1
    with pytest.raises(SweepError):
        threads_per_run(0, 8)


# --- sweeps of tiny runs ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The base config of the smallest real run: 64 + 32 colour images, 2 epochs x 4 steps."""
    folder = tmp_path_factory.mktemp("sweep-data")
    train = write_file(folder / "train.jessl", colour_images(16, seed=0))
    val = write_file(folder / "val.jessl", colour_images(8, seed=1))
    return {"data": {"train": str(train), "val": str(val), "batch_size": 16, "threads": 1},
            "model": {"backbone": "small_cnn", "projector": "64-32"},
            "optim": {"optimizer": "sgd", "lr": 0.1, "warmup_epochs": 1},
            "train": {"epochs": 2, "threads": 1, "log_every": 1},
            "eval": {"k": 10, "batch_size": 64}}


@pytest.fixture
def child_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the runs import this checkout's jessl
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def steps(run_dir):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "step"]


def test_a_bad_point_or_a_foreign_run_stops_the_sweep_before_any_work(tiny, tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(SweepError, match=r"point lr=-1: optim.lr must be > 0"):
        run_sweep(Study(config=tiny, grid=[("optim.lr", [0.1, -1])]), out, say=lambda *a: None)
    assert not list(out.glob("*/config.yaml")), "nothing written for the good point either"
    (out / "lr=0.1").mkdir(parents=True)
    (out / "lr=0.1" / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": 0.5}}))
    with pytest.raises(SweepError, match=r"holds a run of another config \(.*optim.lr"):
        run_sweep(Study(config=tiny, grid=[("optim.lr", [0.1])]), out, say=lambda *a: None)


def test_a_run_saved_before_an_option_existed_still_counts(tiny, tmp_path):
    """A finished point whose config.yaml predates a config field (saved without it) is the same
    run at that field's default: the sweep resumes past it. Set away from the default, the
    field is a real difference and the sweep refuses."""
    out = tmp_path / "sweep"
    never = [sys.executable, "-c", "import sys; sys.exit(5)"]  # any training here is a failure
    study = Study(config=tiny, grid=[("optim.lr", [0.1])])
    run_sweep(study, out, command=never, say=lambda *a: None)
    saved = out / "lr=0.1" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["data"]["view_set"], old["hard_augment"]["skip_small"]  # as an older jessl wrote it
    saved.write_text(yaml.safe_dump(old))
    (saved.parent / "results.json").write_text("{}")
    manifest = run_sweep(study, out, resume=True, command=never, say=lambda *a: None)
    assert manifest["points"][0]["status"] == "done"
    changed = Study(config={**tiny, "data": {**tiny["data"], "view_set": "all.grey_p=0.5"}},
                    grid=[("optim.lr", [0.1])])
    with pytest.raises(SweepError, match=r"another config \(data.view_set differ\)"):
        run_sweep(changed, out, resume=True, command=never, say=lambda *a: None)


# The sweep process of the kill test: its runs pause after their first checkpoint when their
# folder is named in JESSL_TEST_PAUSE, so the SIGKILL lands at a known point
PAUSING_TRAIN = """
import os, sys, time
from pathlib import Path
import jessl.train.trainer as trainer
save = trainer.atomic_save
def save_then_wait(obj, path):
    save(obj, path)
    run = Path(path).parents[1]
    if obj["epoch"] == 1 and run.name == os.environ.get("JESSL_TEST_PAUSE"):
        (run / "paused").write_text(str(os.getpid()))
        time.sleep(120)
trainer.atomic_save = save_then_wait
from jessl.train.command import main
sys.exit(main(sys.argv[1:]))
"""
SWEEP = """
import json, sys
from jessl.studies.study import Study
from jessl.studies.sweep import run_sweep
a = json.loads(sys.argv[1])
run_sweep(Study(config=a["config"], grid=[tuple(g) for g in a["grid"]]), a["out"],
          command=[sys.executable, "-c", a["train"]])
"""


def test_killed_sweep_restarts_each_point_once_and_resumes_the_partial_one(tiny, tmp_path,
                                                                          child_env):
    """Two points that differ only in the final kNN's k (so their losses must be equal): the
    sweep is SIGKILLed while the second pauses after epoch 1; the restart skips the first and
    resumes the second, which ends with the first's losses, step for step."""
    out = tmp_path / "sweep"
    grid = [("eval.k", [10, 20])]
    args = json.dumps({"config": tiny, "grid": grid, "out": str(out), "train": PAUSING_TRAIN})
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, args], cwd=tmp_path,
                             env={**os.environ, "JESSL_TEST_PAUSE": "k=20"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (out / "k=20" / "paused").exists() or sweep.poll() is not None, 240,
                 "the second run's first checkpoint")
        assert sweep.poll() is None, sweep.stdout.read().decode()[-3000:]
        sweep.kill()  # SIGKILL: no handler runs, as when a machine or a job is killed
        sweep.wait()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    child = int((out / "k=20" / "paused").read_text())
    wait_for(lambda: not Path(f"/proc/{child}").exists() or
             Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", 30,
             "the orphaned run to die with its sweep")
    manifest = read_manifest(out)
    assert [p["status"] for p in manifest["points"]] == ["done", "running"]
    assert not (out / "k=20" / "results.json").exists()

    with pytest.raises(SweepError, match="continue it with --resume auto"):
        run_sweep(Study(config=tiny, grid=grid), out, say=lambda *a: None)
    manifest = run_sweep(Study(config=tiny, grid=grid), out, resume=True, say=lambda *a: None)
    first, second = manifest["points"]
    assert (first["status"], second["status"]) == ("done", "done")
    assert len(first["attempts"]) == 1, "a finished point is not run again"
    assert [a["resumed_from"] for a in second["attempts"]] == [None, "epoch-0001.pt"]
    assert second["attempts"][-1]["returncode"] == 0
    a, b = steps(out / "k=10"), steps(out / "k=20")
    assert [r["step"] for r in b] == list(range(1, 9)), "each step once, in order"
    assert [r["loss"] for r in b] == [r["loss"] for r in a]
    assert json.loads((out / MANIFEST).read_text()) == read_manifest(out)


def test_parallel_local_runs_split_the_cores(tiny, tmp_path, child_env):
    """2 runs at once on 2 cores: 1 torch and 1 loader thread each, where the base config
    (threads 0 = every core) would give each run both cores."""
    base = {**tiny, "data": {**tiny["data"], "threads": 0},
            "train": {**tiny["train"], "threads": 0, "epochs": 1},
            "eval": {"knn": False, "rankme": False}}
    out = tmp_path / "sweep"
    manifest = run_sweep(Study(config=base, grid=[("train.seed", [0, 1])]), out, parallel=2,
                         cores=2, say=lambda *a: None)
    assert manifest["threads_per_run"] == 1
    for point in manifest["points"]:
        run = out / point["name"]
        env = json.loads((run / "env.json").read_text())
        assert (env["torch_threads"], env["loader_threads"]) == (1, 1), point["name"]
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["train"]["threads"], config["data"]["threads"]) == (1, 1)
        assert point["status"] == "done"
    starts = sorted(p["attempts"][0]["started"] for p in manifest["points"])
    ends = sorted(p["attempts"][0]["ended"] for p in manifest["points"])
    assert starts[1] <= ends[0], "the second run started before the first ended"


# a stand-in for `jessl train`: records the GPU it was given, overlaps with the others, and
# finishes the run (results.json) so the sweep counts it done
_GPU_CHILD = """
import os, sys, time, pathlib
run = pathlib.Path(sys.argv[sys.argv.index('--config') + 1]).parent
(run / 'gpu.txt').write_text(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))
time.sleep(0.6)
(run / 'results.json').write_text('{}')
"""


def test_visible_gpus_and_slots(monkeypatch):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 5"}) == ["3", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,7"}) == ["2"]  # CUDA stops at -1
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    import torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert visible_gpus({}) == ["0", "1", "2"]
    assert [gpu_for_slot(["0", "1"], k) for k in range(3)] == ["0", "1", "0"]
    assert gpu_for_slot([], 0) is None


@pytest.mark.parametrize("parallel, visible, expect", [
    (2, "3,5", [{"3", "5"}, {"3", "5"}, {"3", "5"}]),   # each run its own GPU
    (3, "4", [{"4"}] * 3),                              # more runs than GPUs: they share
    (1, "3,5", [{"3,5"}] * 3),                          # one at a time: the user's setting
])
def test_parallel_local_runs_get_their_own_gpu(tiny, tmp_path, monkeypatch, parallel, visible,
                                               expect):
    """N runs at once on a machine with GPUs: each sees one (CUDA_VISIBLE_DEVICES), dealt by the
    slot it occupies, so two runs never share a GPU while another GPU idles."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    out = tmp_path / "sweep"
    manifest = run_sweep(Study(config=tiny, grid=[("train.seed", [0, 1, 2])]), out,
                         parallel=parallel, cores=2, say=lambda *a: None,
                         command=[sys.executable, "-c", _GPU_CHILD])
    seen = []
    for point, allowed in zip(manifest["points"], expect):
        assert point["status"] == "done"
        gpu = (out / point["name"] / "gpu.txt").read_text()
        assert gpu in allowed, point["name"]
        assert point["attempts"][-1].get("gpu", visible) == gpu
        seen.append(gpu)
    if parallel == 2:  # the first two started together, on different GPUs
        assert seen[0] != seen[1]


def _pause_one_point():
    """tests.train.test_submit's PausingJob, for the run folder seed=1 only."""
    from jessl.train.submit import TrainJob
    from tests.train.test_submit import PausingJob

    class PauseOnePoint(PausingJob):
        def __call__(self):
            if Path(self.config["train"]["out"]).name != "seed=1":
                return TrainJob.__call__(self)
            return super().__call__()
    return PauseOnePoint


def test_slurm_array_task_preempted_and_requeued(tiny, tmp_path, child_env):
    """Through submitit's LocalExecutor (it runs each array task as a local process and honours
    requeues): the task of one point is interrupted as SLURM preempts (SIGUSR2) after its first
    checkpoint, requeues itself with train.resume auto and finishes."""
    pytest.importorskip("submitit")
    from jessl.train.submit import SlurmOptions
    out = tmp_path / "sweep"
    study = Study(config={**tiny, "eval": {"knn": False}}, grid=[("train.seed", [0, 1])])
    done = {}
    thread = threading.Thread(target=lambda: done.update(manifest=run_sweep(
        study, out, slurm=SlurmOptions(cluster="local", time=5), wait=True,
        job_class=_pause_one_point(), say=lambda *a: None)))
    thread.start()
    try:
        wait_for(lambda: (out / "seed=1" / "paused").exists() or not thread.is_alive(), 240,
                 "the array task's first checkpoint")
        os.kill(int((out / "seed=1" / "paused").read_text()), signal.SIGUSR2)
    finally:
        thread.join(240)
    manifest = done["manifest"]
    assert [p["status"] for p in manifest["points"]] == ["done", "done"]
    assert manifest["executor"] == "slurm" and all(p["attempts"][0]["job_id"]
                                                   for p in manifest["points"])
    log = "".join(p.read_text() for p in (out / "slurm").glob("*_log.out"))
    assert log.count("attempt 1, resume auto") == 2 and log.count("attempt 2, resume auto") == 1
    assert "epoch-0001.pt (epoch 1, step 4)" in log, "the requeued task resumed"
    assert [r["step"] for r in steps(out / "seed=0")] == list(range(1, 9))
    assert [r["step"] for r in steps(out / "seed=1")] == list(range(1, 9))


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "studies").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_docs_studies_expand_to_configs(path):
    """Every study file of docs/studies reads, and every point's overrides exist in the config
    (a typo fails here, not an hour into the study); its plot keys are config fields."""
    from jessl.config import RunConfig
    study = load_study(path)
    points = expand_grid(study.grid, study.seeds)
    # each seed's pass <= 60 min on 2 cores (docs/studies.md): a sweep of several seeds can
    # run one seed a session, since a stopped sweep resumes
    assert 1 <= len(points) // len(study.seeds or [0]) <= 12
    for point in points:
        cfg = RunConfig.from_dict(study.config).apply_overrides(study.overrides +
                                                                point.override_args())
        for key in (study.x, study.y):
            if key:
                cfg.get(key)
    assert (ROOT / "docs" / "studies.md").read_text().count(f"studies/{path.name}") >= 1


def test_a_failed_point_stays_failed_unless_retried(tiny, tmp_path):
    """A stand-in for `jessl train` that fails (as a diverged run does) at once: the point is
    recorded failed with the log's error line, skipped by a restart, run by --retry-failed."""
    out = tmp_path / "sweep"
    fail = [sys.executable, "-c", "import sys; print('jessl: error: loss is nan'); sys.exit(3)"]
    study = Study(config=tiny, grid=[("optim.lr", [0.1])])
    manifest = run_sweep(study, out, command=fail, say=lambda *a: None)
    point = manifest["points"][0]
    assert point["status"] == "failed" and point["attempts"][0]["returncode"] == 3
    assert point["error"] == "exit status 3: jessl: error: loss is nan"
    assert run_sweep(study, out, resume=True, command=fail,
                     say=lambda *a: None)["points"][0]["attempts"] == point["attempts"]
    again = run_sweep(study, out, resume=True, retry_failed=True, command=fail,
                      say=lambda *a: None)["points"][0]
    assert len(again["attempts"]) == 2 and again["status"] == "failed"


@pytest.mark.parametrize("grid", ["optim.lr", "optim.lr=", "optim.lr=0.1,0.1"])
def test_a_bad_grid_is_one_line_and_writes_nothing(grid, tmp_path, capsys):
    """Grid mistakes are StudyErrors (UserErrors): `jessl sweep` prints one line, exits 2 and
    creates no sweep folder."""
    from jessl.studies.command import sweep_main
    from jessl.studies.grid import StudyError
    from jessl.errors import UserError
    assert issubclass(StudyError, UserError)
    out = tmp_path / "sweep"
    assert sweep_main(["--grid", grid, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jessl sweep: error: ") and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_a_resubmitted_slurm_sweep_leaves_queued_tasks_alone(tmp_path):
    """`jessl sweep --slurm` run again while its array is still queued: a point whose last task
    SLURM still holds (pending, running, requeued) is not submitted a second time; one whose task
    ended without results (or that SLURM no longer knows) is."""
    from jessl.studies.slurm import live_task, submit_slurm
    from jessl.train.submit import SlurmOptions
    states = {"9_0": "PENDING", "9_1": "RUNNING", "9_2": "FAILED", "9_3": "UNKNOWN"}
    state_of = lambda job_id, folder: states[job_id]  # noqa: E731 - sacct's answer
    entry = lambda i, **kw: {"name": f"p{i}", "status": "pending",  # noqa: E731
                             "attempts": [{"job_id": f"9_{i}", "returncode": None, **kw}]}
    assert [live_task(entry(i), "f", state_of) for i in range(4)] == ["9_0", "9_1", None, None]
    assert live_task(entry(0, ended="t"), "f", state_of) is None  # waited for: it has ended
    assert live_task({"name": "p", "attempts": []}, "f", state_of) is None
    out = tmp_path / "sweep"
    out.mkdir()
    manifest = {"format": "jessl-sweep/1",
                "points": [entry(0), entry(1), {**entry(4), "status": "done"}]}
    said = []
    jobs = submit_slurm(out, manifest, SlurmOptions(), say=said.append, state_of=state_of)
    assert jobs == []
    assert [p["status"] for p in manifest["points"]] == ["submitted", "submitted", "done"]
    assert "p0 still queued or running as job 9_0" in said[0]
    assert read_manifest(out)["points"][0]["status"] == "submitted"


def test_a_method_option_added_since_counts_at_its_default():
    """A run saved before a method gained an option (SimCLR's `decoupled`) is the same run as
    one saved after with that option at its default, and differs from one that sets it."""
    from jessl.studies.sweep import same_run
    old = {"method": {"name": "simclr", "temperature": 0.1}}
    assert same_run(old, {"method": {"name": "simclr", "temperature": 0.1,
                                     "decoupled": False}}) == []
    assert same_run(old, {"method": {"name": "simclr", "temperature": 0.1,
                                     "decoupled": True}}) == ["method.decoupled"]


def test_a_switched_off_section_s_other_fields_do_not_make_another_run():
    from jessl.studies.sweep import same_run
    spl_off = {"progressive": {"min_size": 0, "step": 8, "warmup_epochs": 0.0}}
    assert same_run(spl_off, {"progressive": {"min_size": 0}}) == []  # the trainer reads neither
    assert same_run({"progressive": {"min_size": 16, "step": 8}},
                    {"progressive": {"min_size": 16}}) == ["progressive.step"]
    assert same_run(spl_off, {"progressive": {"min_size": 16, "step": 8}}) == [
        "progressive.min_size", "progressive.warmup_epochs"]
    ha_off = {"hard_augment": {"enabled": True, "candidates": 0, "size": 8}}
    # the switch's own fields still count; size, read by neither run, does not
    assert same_run(ha_off, {"hard_augment": {"enabled": False}}) == [
        "hard_augment.candidates", "hard_augment.enabled"]
