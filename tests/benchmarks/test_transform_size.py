"""The transformed-data-size benchmark's --quick mode runs end to end, so the script cannot rot."""
import json

from benchmarks import transform_size


def test_quick_mode_measures_the_transform_graph_against_the_source_images(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert transform_size.main(["--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["images"] == 20 and results["source_bytes"] > 0
    assert results["transform_output_bytes"]["transform_graph"] > 0
    # materialize=False: Transform writes no transformed examples.
    assert results["transform_output_bytes"].get("transformed_examples", 0) == 0
    assert results["transform_output_vs_source"] == round(
        results["transform_output_total_bytes"] / results["source_bytes"], 4)
    assert results["materialized_float32_bytes"] == 20 * 32 * 32 * 3 * 4
    assert "transform_output_vs_source" in capsys.readouterr().out
