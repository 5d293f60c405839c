"""The quality benchmark's --quick mode runs end to end (so the script cannot rot), and its data split keeps the
scored images out of every training draw."""
import json

import numpy as np
import pytest

from benchmarks import quality


def test_quick_mode_scores_every_column_on_the_same_pool(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert quality.main(["--quick", "--data-dir", str(tmp_path / "data"), "--json", str(out),
                         "--plot", str(png)]) == 0
    results = json.loads(out.read_text())
    assert results["ks"] == list(quality.QUICK.ks) and results["split"] == "test"
    assert len(results["runs"]) == len(results["ks"]) * len(results["seeds"])
    for run in results["runs"]:
        for column in quality.COLUMNS:  # digits are grey: the raw-pixel SVC column is there too
            assert 0 <= run[column]["accuracy"] <= 1 and run[column]["seconds"] > 0, column
        assert run["stage1"]["seconds"] <= run["final"]["seconds"]
        assert run["final"]["info"]["chosen_stage"] in ("stage1", "stage2")
    pool = results["datasets"]["digits"]
    assert pool["scored_images"] == 10 * quality.QUICK.test_per_class
    assert results["goal_run"]["k"] == quality.QUICK.goal_run_k and len(results["goal_run"]["runs"]) == 1
    assert set(results["goals"]) == {"stage1_minus_probe_worst", "digits_5_per_class_final"}
    # The prepared files are real PNGs in <dir>/<dataset>/<class>/ with a manifest beside them.
    assert len(list((tmp_path / "data" / "digits").glob("*/*.png"))) == 1797
    assert json.loads((tmp_path / "data" / "digits.json").read_text())["total"] == 1797
    assert png.read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "linear probe" in printed and "tutorial recipe" in printed and "stage1_minus_probe_worst" in printed


@pytest.mark.parametrize("sizes", [[32, 40, 55, 90, 164], [178, 183, 174]])
def test_test_dev_and_training_pools_never_overlap(sizes):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    classes = [str(c) for c in range(len(sizes))]
    test_pool, test_train = quality.partition(labels, "test", 40, classes)
    dev_pool, dev_train = quality.partition(labels, "dev", 40, classes)
    assert not set(test_pool) & set(dev_pool)
    assert not set(test_pool) & set(np.concatenate(test_train)) and not set(test_pool) & set(np.concatenate(dev_train))
    assert not set(dev_pool) & set(np.concatenate(dev_train))
    for pools in (test_train, dev_train):
        assert min(len(p) for p in pools) >= quality.POOL_RESERVE
    # The pools depend on the data only: a second call gives the same test pool.
    assert np.array_equal(test_pool, quality.partition(labels, "test", 40, classes)[0])
    # Nested draws: a seed's k=5 images are among its k=20 images; other seeds draw differently.
    small, large = (set(quality.draw(test_train, k, 0, classes)) for k in (5, 20))
    assert small < large and set(quality.draw(test_train, 20, 1, classes)) != large


def test_a_class_too_small_for_both_pools_is_named():
    labels = np.array([0] * 50 + [1] * 21)
    with pytest.raises(ValueError, match="class 'b' has 21 images"):
        quality.partition(labels, "test", 40, ["a", "b"])
