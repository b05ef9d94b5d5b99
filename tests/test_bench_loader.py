"""The loader benchmark's torchvision reference (jessl.benchmarks.loader): what it times."""

import pytest

from jessl.benchmarks import loader as bench
from jessl.data import convert
from jessl.data.views import resolve_views
from tests.data.helpers import natural_like


@pytest.mark.parametrize("warmup, reads", [(False, 1), (True, 2)])
def test_torchvision_reference_runs_a_warm_up_epoch_before_the_timed_one(
        tmp_path, monkeypatch, warmup, reads):
    """Issue 17's protocol: with `warmup` every image is read twice, the first epoch untimed
    (workers' start and first allocations out of the figure); without it, once."""
    path = tmp_path / "tiny.jessl"
    convert([(natural_like(24, 24, seed=i), i % 2) for i in range(6)], path, workers=1,
            progress=False)
    calls = []
    get = bench.TorchvisionPairs.__getitem__
    monkeypatch.setattr(bench.TorchvisionPairs, "__getitem__",
                        lambda self, i: calls.append(i) or get(self, i))
    rate = bench.torchvision_pairs_per_s(path, resolve_views("crop_cifar"), 6, batch_size=4,
                                         workers=0, tuned=False, warmup=warmup)
    assert rate > 0
    assert sorted(calls) == sorted(list(range(6)) * reads)
