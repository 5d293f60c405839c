"""The pipeline-overhead benchmark's --quick mode runs end to end, so the script cannot rot."""
import json

import pytest

from benchmarks import pipeline_overhead


# About 5 minutes each on 2 cores: behind `slow` to keep `make test` within CI's budget.
@pytest.mark.slow
def test_quick_mode_times_the_pipeline_the_plain_script_and_a_cached_rerun(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert pipeline_overhead.main(["--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    for key in pipeline_overhead.GOALS:
        assert results[key] > 0
    # The times are rounded to 0.1 s in the JSON, the ratios are not.
    assert results["first_run_vs_plain_script"] == pytest.approx(results["first_run_s"] / results["plain_script_s"],
                                                                 rel=0.05)
    assert {"ImageFolderExampleGen", "Transform", "Trainer", "ComparingEvaluator"} <= set(results["first_run_executed"])
    # Data ingestion does not depend on the code, so it must come from the cache whatever else re-runs.
    assert not {"ImageFolderExampleGen", "StatisticsGen"} & set(results["rerun_executed"])
    assert 0 <= results["plain_script_eval_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "first_run_vs_plain_script" in printed and "cached_rerun_vs_first_run" in printed
