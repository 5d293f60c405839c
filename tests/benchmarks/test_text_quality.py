"""The text quality benchmark's --quick mode runs end to end (so the script cannot rot), its data split keeps the
scored texts out of every training draw, and the fortunes preparation cleans records as the dataset notes say."""
import json

import numpy as np
import pytest

from benchmarks import datasets, text_quality


def test_quick_mode_scores_every_column_on_the_same_pool(module_cache, tmp_path, capsys):
    del module_cache  # sets HUBTFX_CACHE_DIR: the MiniLM pair is built into the session's cache, not the user's
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert text_quality.main(["--quick", "--json", str(out), "--plot", str(png)]) == 0
    results = json.loads(out.read_text())
    assert results["ks"] == list(text_quality.QUICK.ks) and results["split"] == "test"
    assert len(results["runs"]) == len(results["ks"]) * len(results["seeds"])
    for run in results["runs"]:
        for column in text_quality.COLUMNS:
            for metric in text_quality.METRICS:
                assert 0 <= run[column][metric] <= 1, (column, metric)
            assert run[column]["seconds"] > 0, column
        assert run["train_texts"] == 3 * run["k"]
        assert run["stage1"]["seconds"] <= run["final"]["seconds"]
        assert run["final"]["info"]["chosen_stage"] in ("stage1", "stage2")
        assert "stage2" in run["final"]["info"]["stages"]  # quick mode's params let stage 2 run
    pool = results["dataset"]
    assert pool["name"] == text_quality.QUICK_DATASET and pool["texts"] == 3 * text_quality.QUICK.quick_texts_per_class
    assert pool["scored_per_class"] == [text_quality.QUICK.test_per_class] * 3
    assert set(results["summary"]) == set(text_quality.COLUMNS)
    assert set(results["goals"]) == set(text_quality.GOALS) == set(results["margins_on_accuracy"])
    assert png.read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "TF-IDF + LR" in printed and "MiniLM probe" in printed and "balanced accuracy" in printed
    assert "final_minus_tfidf_k<=20_worst" in printed


def test_test_dev_and_training_pools_never_overlap_and_the_pool_is_capped_per_class():
    sizes = [1022, 208, 74, 146, 150]  # fortunes' largest, smallest and two small classes
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    classes = [str(c) for c in range(len(sizes))]
    test_pool, test_train = text_quality.partition(labels, "test", 40, 50, classes)
    dev_pool, dev_train = text_quality.partition(labels, "dev", 40, 50, classes)
    assert np.bincount(labels[test_pool]).tolist() == [40, 40, 12, 40, 40]
    assert np.bincount(labels[dev_pool]).tolist() == [40, 40, 12, 40, 40]
    assert not set(test_pool) & set(dev_pool)
    assert not set(test_pool) & set(np.concatenate(test_train)) and not set(test_pool) & set(np.concatenate(dev_train))
    assert not set(dev_pool) & set(np.concatenate(dev_train))
    for pools in (test_train, dev_train):
        assert min(len(p) for p in pools) >= 50
    assert np.array_equal(test_pool, text_quality.partition(labels, "test", 40, 50, classes)[0])
    small, large = (set(text_quality.draw(test_train, k, 0, classes)) for k in (5, 50))
    assert small < large and set(text_quality.draw(test_train, 50, 1, classes)) != large


def test_a_class_too_small_for_both_pools_is_named():
    labels = np.array([0] * 80 + [1] * 51)
    with pytest.raises(ValueError, match="class 'b' has 51 texts"):
        text_quality.partition(labels, "test", 40, 50, ["a", "b"])


def test_fortune_records_lose_overstrike_and_attribution_unless_kept():
    record = "\nA l_\x08a_\x08w_\x08y_\x08e_\x08r   walks   into a bar.\n\t\t-- Anonymous, \"Bar Jokes\"\n\n"
    assert datasets.clean_fortune(record) == "A lawyer walks into a bar."
    assert datasets.clean_fortune(record, keep_attribution=True) == (
        "A lawyer walks into a bar.\n-- Anonymous, \"Bar Jokes\"")
    # A leading "--" is the text itself, not an attribution.
    assert datasets.clean_fortune("-- not an attribution") == "-- not an attribution"
    assert "fortunes" in datasets.TEXT_SOURCES and "fortunes" not in datasets.SOURCES  # the image sets stay apart
