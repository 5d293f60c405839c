"""The Trainer benchmark's --quick mode runs end to end, so the script cannot rot."""
import json

from benchmarks import trainer_benchmark


def test_quick_mode_prints_and_writes_both_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert trainer_benchmark.main(["--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    for key in trainer_benchmark.GOALS:
        assert results[key] > 0
    assert results["stage1_s"] > 0 and results["stage2_images_per_s"] > 0 and results["bare_loop_images_per_s"] > 0
    printed = capsys.readouterr().out
    assert "stage1_vs_one_forward_pass" in printed and "stage2_vs_bare_loop_throughput" in printed
    assert 0 < results["one_forward_pass_trace_s"] < results["one_forward_pass_s"]
    assert results["stage1_vs_forward_without_trace"] > results["stage1_vs_one_forward_pass"]
