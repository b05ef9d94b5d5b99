"""`jessl quickstart`, shortened to one epoch: offline digits -> two files -> pretrain -> report."""

import re

from jessl.data.reader import Reader
from jessl.quickstart import run


def test_quickstart_pretrains_and_reports(tmp_path, capsys):
    rc = run(tmp_path, {"train.epochs": 1, "data.batch_size": 256, "train.threads": 1,
                        "data.threads": 1, "train.progress": False})
    text = capsys.readouterr().out
    assert rc == 0
    with Reader(tmp_path / "digits-train.jessl") as train, \
            Reader(tmp_path / "digits-val.jessl") as val:
        assert (len(train), len(val)) == (1438, 359)  # 20% of every class held out
        assert set(train.labels.tolist()) == set(val.labels.tolist()) == set(range(10))
    numbers = {}
    for name, pattern in (("probe", r"online linear probe, validation top-1:\s+([\d.]+)%"),
                          ("knn", r"trained network:\s+([\d.]+)%"),
                          ("random", r"at random init:\s+([\d.]+)%")):
        match = re.search(pattern, text)
        assert match, f"no {name} line in:\n{text}"
        numbers[name] = float(match.group(1))
    assert all(0 <= v <= 100 for v in numbers.values())
    assert numbers["random"] > 10  # kNN of even a random CNN beats chance on digits
    assert (tmp_path / "run" / "checkpoints" / "epoch-0001.pt").is_file()
    assert (tmp_path / "run" / "results.json").is_file()
