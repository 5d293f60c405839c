"""The transfer-vs-scratch benchmark's --quick mode runs end to end, so the script cannot rot."""
import json

import pytest

from benchmarks import transfer_vs_scratch


# About 5 minutes each on 2 cores: behind `slow` to keep `make test` within CI's budget.
@pytest.mark.slow
def test_quick_mode_compares_the_three_variants_on_equal_time(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert transfer_vs_scratch.main(["--quick", "--json", str(out), "--plot", str(png)]) == 0
    results = json.loads(out.read_text())
    assert results["ks"] == list(transfer_vs_scratch.QUICK.ks)
    assert len(results["runs"]) == len(results["ks"]) * len(results["seeds"])
    for run in results["runs"]:
        # (b) includes (a)'s time, and the scratch CNN trains until it has used (b)'s time.
        assert 0 < run["stage1"]["seconds"] < run["stage1+2"]["seconds"] <= run["scratch"]["seconds"]
        assert run["scratch"]["epochs"] >= 1
    for variant in transfer_vs_scratch.VARIANTS:
        for k in results["ks"]:
            stats = results["summary"][variant][str(k)]
            assert 0 <= stats["accuracy_min"] <= stats["accuracy_mean"] <= stats["accuracy_max"] <= 1
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "stage1+2" in capsys.readouterr().out
