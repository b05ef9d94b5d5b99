"""A few hundred mutants of small dataset files (jessl.data.fuzz): every one ends in a
documented error or reads as the original, and damage that `verify` passes never reads
differently. `python bench/fuzz.py --mutants 5000` runs thousands, each in a worker process
under a timeout (crashes and hangs counted)."""

import collections

import pytest

from jessl.data import fuzz

MUTANTS = 360  # 40 of each kind; about 8 s on the dev box


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return fuzz.base_files(tmp_path_factory.mktemp("fuzz"))


def test_every_mutant_is_a_documented_error_or_reads_as_the_original(bases, tmp_path):
    seen, wrong = collections.Counter(), []
    contents = [b.read_bytes() for b in bases]
    mutant = tmp_path / "mutant.jessl"
    for seed in range(MUTANTS):
        kind, data = fuzz.mutate(contents[seed % len(bases)], seed)
        mutant.write_bytes(data)
        result = fuzz.outcome(bases[seed % len(bases)], mutant, kind)
        category = result.split(":")[0]
        seen[kind, category] += 1
        if category not in fuzz.OK:
            wrong.append((seed, kind, result))
    assert not wrong, wrong[:5]
    # the campaign reaches every part: each kind ran, damage is caught both on open and by
    # verify, and forged files get past the checksums
    assert {k for k, _ in seen} == set(fuzz.KINDS)
    assert seen["flip", "rejected"] and seen["flip", "verify_found"]
    assert seen["name", "verify_found"] == MUTANTS // len(fuzz.KINDS)  # names are checksummed
    assert seen["truncate", "rejected"] == MUTANTS // len(fuzz.KINDS)
    assert seen["sof", "verify_found"] and seen["index", "verify_found"]


def test_a_mutant_is_a_function_of_its_seed(bases):
    data = bases[0].read_bytes()
    for seed in range(2 * len(fuzz.KINDS)):
        assert fuzz.mutate(data, seed) == fuzz.mutate(data, seed)
