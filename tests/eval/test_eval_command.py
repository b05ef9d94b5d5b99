"""`jessl eval` on tiny files: the three network sources, the data forms, the suite's report,
and one-line errors for bad input. Colour-coded classes, so even a random CNN separates them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from jessl.checkpoint import latest_checkpoint, load_checkpoint
from jessl.cli import main
from jessl.config import load_config
from jessl.eval.datasets import REGISTRY, DatasetEntry, EvalError, load_data
from jessl.eval.models import from_checkpoint, from_weights
from tests.train.conftest import colour_images, tiny_overrides, write_file

FAST = ["--threads", "1", "--batch-size", "64"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(train, test): 4 classes x 16 and x 8 colour images of 16 px."""
    folder = tmp_path_factory.mktemp("eval-data")
    return (write_file(folder / "train.jessl", colour_images(16, seed=0)),
            write_file(folder / "test.jessl", colour_images(8, seed=1)))


@pytest.fixture(scope="module")
def run_dir(files, tmp_path_factory):
    """A 1-epoch simclr run of small_cnn (4 steps), the checkpoint `jessl eval` reads."""
    from jessl.train.trainer import train
    out = tmp_path_factory.mktemp("runs") / "tiny"
    before = torch.get_num_threads()
    train(load_config(None, tiny_overrides(*files, out, {"train.epochs": 1, "eval.knn": False,
                                                         "eval.rankme": False})))
    torch.set_num_threads(before)
    return out


def jessl_eval(capsys, *args):
    """Run `jessl eval ARGS --json` in this process -> (status, parsed stdout or None, stderr)."""
    rc = main(["eval", *map(str, args), "--json", *FAST])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_random_init_knn_caches_features(files, tmp_path, capsys):
    train, test = files
    args = ["knn", "--random-init", "--backbone", "small_cnn", "--train", train, "--test", test,
            "--k", "5,20", "--cache-dir", tmp_path]
    rc, out, err = jessl_eval(capsys, *args)
    assert rc == 0, err
    r = out["result"]
    assert set(r) == {"k5_top1", "k20_top1", "features"} and r["features"] == 256
    assert r["k5_top1"] > 75  # 4 colours, chance 25%
    assert out["model"] == {"label": "random-init", "backbone": "small_cnn", "cifar_stem": True,
                            "seed": 0, "projector": False}
    cached = sorted((tmp_path / "features").glob("features-*.pt"))
    assert len(cached) == 2  # train and test
    stamps = [p.stat().st_mtime_ns for p in cached]
    rc, again, _ = jessl_eval(capsys, *args)
    assert again["result"] == r  # read back from the cache, not recomputed
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    rc, _, _ = jessl_eval(capsys, *args, "--seed", "1")
    assert rc == 0  # another seed is another random network: its own cache entries
    assert len(list((tmp_path / "features").glob("features-*.pt"))) == 4


def test_weights_of_a_torchvision_model_with_head_and_prefix(files, tmp_path, capsys):
    net = torchvision.models.resnet18(num_classes=7)  # 7x7 stem, a classifier head
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # as DDP saves it
    torch.save(state, tmp_path / "r18.pt")
    model = from_weights(tmp_path / "r18.pt", "resnet18")
    assert model.cifar_stem is False  # read off conv1's 7x7 kernel
    mine = model.backbone.state_dict()
    assert set(mine) == {k for k in net.state_dict() if not k.startswith("fc.")}
    assert all(torch.equal(mine[k], v) for k, v in net.state_dict().items() if k in mine)

    train, test = files
    rc, out, err = jessl_eval(capsys, "mlp", "--weights", tmp_path / "r18.pt", "--backbone",
                              "resnet18", "--train", train, "--test", test, "--epochs", "2",
                              "--hidden", "16-16", "--no-cache")
    assert rc == 0, err
    r = out["result"]
    assert out["model"]["label"] == "r18" and r["features"] == 512
    assert r["hidden"] == [16, 16] and len(r["val_top1"]) == 2
    assert 0 <= r["top1_best"] <= 100 and 0 <= r["top1_last"] <= 100


def test_checkpoint_file_or_run_folder(files, run_dir, tmp_path, capsys):
    ckpt = latest_checkpoint(run_dir)
    state = load_checkpoint(ckpt)["method"]
    model = from_checkpoint(run_dir)
    assert (model.arch, model.cifar_stem, model.seed) == ("small_cnn", True, 0)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[f"backbone.{k}"]), k  # the trained weights, not an init
    assert model.projector is not None
    assert torch.equal(model.projector.state_dict()["0.weight"], state["projector.0.weight"])

    train, test = files
    rc, out, err = jessl_eval(capsys, "linear", "--checkpoint", ckpt, "--train", train,
                              "--test", test, "--epochs", "3", "--cache-dir", tmp_path)
    assert rc == 0, err
    assert out["model"]["label"] == f"{run_dir.name}@epoch-0001" and out["model"]["projector"]
    r = out["result"]
    assert len(r["val_scores"]) == 9 and r["epochs"] == 3
    assert r["top1"] > 50  # chance 25%
    rc, by_folder, _ = jessl_eval(capsys, "linear", "--checkpoint", run_dir, "--train", train,
                                  "--test", test, "--epochs", "3", "--cache-dir", tmp_path)
    assert by_folder["result"] == r  # the folder means its newest checkpoint


def test_suite_writes_report_beside_the_baseline(files, run_dir, tmp_path, capsys):
    train, test = files
    rc, out, err = jessl_eval(
        capsys, "suite", "--checkpoint", run_dir, "--datasets",
        f"pair={train}:{test},split={train}", "--split-per-class", "4", "--out", tmp_path / "r",
        "--k", "5", "--linear-epochs", "2", "--mlp-epochs", "2", "--mlp-hidden", "16-16",
        "--cache-dir", tmp_path / "cache")
    assert rc == 0, err
    for name in ("report.md", "report.json", "report.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    assert (tmp_path / "r" / "report.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    trained = out["model"]["label"]
    assert report["models"] == ["random-init", trained]
    cells = {(r["model"], r["dataset"], r["probe"], r["metric"]) for r in report["rows"]}
    probes = {c[2] for c in cells}
    assert {"knn k=5", "linear", "mlp best", "mlp last", "rankme", "knn k=5 (projector)",
            "rankme (projector)"} == probes
    assert {c[1] for c in cells} == {"pair", "split"}
    mine = {c[1:] for c in cells if c[0] == trained}
    assert mine == {c[1:] for c in cells if c[0] == "random-init"}  # a baseline for every number
    table = (tmp_path / "r" / "report.md").read_text()
    assert f"| random-init | {trained} | Δ {trained} |" in table
    assert [d["test_records"] for d in out["datasets"]] == [None, 16]  # 4 a class held out


def test_split_per_class_is_reproducible_and_disjoint(files, tmp_path, capsys):
    train, _ = files
    entry = DatasetEntry(str(train), None, 3)
    kw = {"roots": [], "cache": tmp_path}
    a, b = load_data("t", entry, seed=5, **kw), load_data("t", entry, seed=5, **kw)
    other = load_data("t", entry, seed=6, **kw)
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.test_idx, b.test_idx)
    assert not np.array_equal(a.test_idx, other.test_idx)
    assert not set(a.train_idx) & set(a.test_idx)
    assert len(a.train_idx) + len(a.test_idx) == 64
    labels = np.array([label for _, label in colour_images(16, seed=0)])
    assert np.bincount(labels[a.test_idx]).tolist() == [3, 3, 3, 3]
    sub = load_data("t", entry, seed=5, train_per_class=2, **kw)
    assert np.bincount(labels[sub.train_idx]).tolist() == [2, 2, 2, 2]
    assert set(sub.train_idx) <= set(a.train_idx)  # subsampled from the train side only

    rc, out, err = jessl_eval(capsys, "rankme", "--random-init", "--backbone", "small_cnn",
                              "--train", train, "--split-per-class", "3", "--seed", "5",
                              "--no-cache")
    assert rc == 0, err
    assert out["dataset"]["test_records"] == 12 and out["result"]["rows"] == 52
    assert out["result"]["rankme"] >= 1


def test_registry_npz_is_converted_once(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "shared"
    root.mkdir()
    stem = REGISTRY["tinyimagenet"].train
    x = rng.integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    np.savez(root / f"{stem}.npz", x=x, y=np.repeat(np.arange(4), 15))
    args = ["knn", "--random-init", "--backbone", "small_cnn", "--dataset", "tinyimagenet",
            "--data-root", root, "--cache-dir", tmp_path / "cache", "--k", "3"]
    rc, out, err = jessl_eval(capsys, *args)
    assert rc == 0, err
    assert "converting" in err and (tmp_path / "cache" / "data" / f"{stem}.jessl").is_file()
    assert out["dataset"]["test_records"] == 40  # tinyimagenet: 10 of each class held out
    rc, _, err = jessl_eval(capsys, *args)
    assert rc == 0 and "converting" not in err


@pytest.mark.parametrize("case, message", [
    ("missing_file", "dataset file {tmp}/nope.jessl does not exist"),
    ("unknown_backbone", "unknown backbone 'resnet7'"),
    ("no_config", "has no stored config"),
    ("no_backbone", "--backbone NAME is needed"),
    ("unknown_dataset", "unknown dataset 'mnist'"),
    ("registry_absent", "dataset 'cifar10_jpeg_train': neither cifar10_jpeg_train.jessl"),
    ("weights_mismatch", "weights do not fit"),
])
def test_bad_input_is_one_clear_line(case, message, files, tmp_path, capsys):
    train, test = files
    data = ["--train", train, "--test", test]
    torch.save({"method": {}}, tmp_path / "bare.pt")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    args = {
        "missing_file": ["--random-init", "--backbone", "small_cnn", "--train",
                         tmp_path / "nope.jessl", "--test", test],
        "unknown_backbone": ["--random-init", "--backbone", "resnet7", *data],
        "no_config": ["--checkpoint", tmp_path / "bare.pt", *data],
        "no_backbone": ["--weights", tmp_path / "r18.pt", *data],
        "unknown_dataset": ["--random-init", "--backbone", "small_cnn", "--dataset", "mnist"],
        "registry_absent": ["--random-init", "--backbone", "small_cnn", "--dataset", "cifar10",
                            "--data-root", tmp_path, "--cache-dir", tmp_path],
        "weights_mismatch": ["--weights", tmp_path / "r18.pt", "--backbone", "small_cnn", *data],
    }[case]
    rc, _, err = jessl_eval(capsys, "knn", *args)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jessl: error: ")
    assert message.format(tmp=tmp_path) in lines[0]


def test_a_bad_option_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "knn", "--random-init", "--checkpoint", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with argument" in err[0]


def test_parsing_data_arguments():
    from jessl.eval.datasets import parse_datasets
    got = parse_datasets("cifar10, mine=a.jessl:b.jessl,x/c.jessl:d.jessl,s=e.jessl", 7)
    assert got == [("cifar10", REGISTRY["cifar10"]), ("mine", DatasetEntry("a.jessl", "b.jessl")),
                   ("c", DatasetEntry("x/c.jessl", "d.jessl")),
                   ("s", DatasetEntry("e.jessl", None, 7))]
    with pytest.raises(EvalError, match="--split-per-class"):
        parse_datasets("s=e.jessl")


def test_convert_and_inspect_stay_torch_free():
    code = ("import sys, jessl.cli; jessl.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
