"""The scaling benchmark: its subsets, its accounting of the recipe's work, and its --quick mode end to end."""
import json
import time

import pytest

from benchmarks import scaling


def test_the_recipes_work_counts_every_forward_pass_and_step_it_made():
    history = {"stages": {"stage1": {"train_examples": 80},
                          "stage2": {"train_examples": 64, "validation_examples": 16,
                                     "history": {"loss": [1.0, 0.9, 0.8]}}}}
    work = scaling.recipe_work(history, images=100, batch_size=16)
    assert work == {"train_images": 80, "eval_images": 20, "stage2_epochs_run": 3,
                    "forward_images": 80 + 20 + 3 * 16, "training_steps": 3 * 4}
    skipped = scaling.recipe_work({"stages": {"stage1": {"train_examples": 80}, "stage2": {"outcome": "skipped"}}},
                                  images=100, batch_size=16)
    assert skipped["training_steps"] == 0 and skipped["forward_images"] == 100


def test_temporary_disk_is_what_was_written_and_deleted_again(tmp_path):
    kept, scratch = tmp_path / "kept", tmp_path / "scratch"
    kept.mkdir(), scratch.mkdir()
    (kept / "model").write_bytes(b"x" * 1000)
    with scaling.DiskWatcher([str(kept), str(scratch)]) as disk:
        (scratch / "shard").write_bytes(b"y" * 5000)
        time.sleep(3 * scaling.DISK_SAMPLE_SECONDS)
        (scratch / "shard").unlink()
    assert disk.peak == 6000 and scaling.folder_bytes(str(kept)) == 1000


# About 5 minutes on 2 cores (three whole pipeline runs): behind `slow` to keep `make test` within CI's budget.
@pytest.mark.slow
def test_quick_mode_runs_the_pipeline_at_two_sizes_and_prints_the_goals(tmp_path, capsys):
    out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
    assert scaling.main(["--quick", "--json", str(out), "--plot", str(png)]) == 0
    results = json.loads(out.read_text())
    assert [r["images"] for r in results["runs"]] == list(scaling.QUICK_SIZES)
    for r in results["runs"]:
        assert {"ImageFolderExampleGen", "Transform", "Trainer", "Evaluator"} <= set(r["components"])
        assert r["pipeline_seconds"] > 0 and r["anchor_seconds"] > 0 and r["peak_rss_bytes"] > 0
        assert r["work"]["train_images"] + r["work"]["eval_images"] == r["images"]
    assert results["seconds_per_image_vs_anchor_at_largest"] > 0 and results["peak_rss_largest_vs_smallest"] > 0
    assert results["temporary_disk_vs_source_worst"] >= 0
    comparison = results["beam_workers_comparison"]  # the middle size again, with 2 Beam worker processes
    assert comparison["beam_workers"] == 2 and comparison["images"] == results["runs"][1]["images"]
    assert {"ImageFolderExampleGen", "StatisticsGen", "Transform", "Evaluator"} <= set(comparison["components"])
    assert png.stat().st_size > 0
    assert "seconds_per_image_vs_anchor_at_largest" in capsys.readouterr().out
