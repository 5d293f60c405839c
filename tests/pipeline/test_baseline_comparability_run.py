"""Field report case 10 (issue 13): a later span adds a class; the latest blessed model has one output fewer.

Three `hubtfx run --use-spans` runs share one output folder (tiny module, colour classes): span 1 with three
classes is pushed; span 2 adds 'yellow', so the baseline cannot be compared and only the absolute threshold
gates (the summary and report say why); a third run with nothing new compares with span 2's model like any
rerun. Before the fix, run 2 failed in TFMA ("label 3 outside [0, 3)") and so did every later run.
"""
import contextlib
import glob
import html
import io
import json
import os

import numpy as np
import pytest
from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from PIL import Image
from tfx import v1 as tfx

from hubtfx.components.evaluator import comparability, executor
from hubtfx.components.trainer import exported_model
from hubtfx.pipeline import pipeline as pipeline_lib
from hubtfx.pipeline.cli import commands
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.serving import predict

COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 1.0, 0.1), "blue": (0.1, 0.1, 1.0), "yellow": (1.0, 1.0, 0.1)}


def _add_span(data_root, span, classes, images_per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = os.path.join(data_root, f"span-{span}", name)
        os.makedirs(folder)
        for index in range(images_per_class):
            pixels = np.array(COLOURS[name]) * rng.uniform(0.4, 1.0) + rng.normal(0, 0.15, (32, 32, 3))
            Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB").save(
                os.path.join(folder, f"s{span}_{index:03d}.png"))


def _run(data_root, output_dir, module):
    """`hubtfx run` in this process; (exit code, everything it printed)."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(out):
        code = commands.main(["run", "--data-root", data_root, "--use-spans", "--output-dir", output_dir,
                         "--hub-handle", module, "--stage2-epochs", "0",
                         "--batch-size", "8", "--accuracy-threshold", "0.0", "--max-accuracy-drop", "0.0"])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, tiny_module):
    """[(exit code, output)] of the three runs, and their shared output folder."""
    work = tmp_path_factory.mktemp("case10")
    data_root, output_dir = str(work / "data"), str(work / "out")
    _add_span(data_root, 1, ["blue", "green", "red"], seed=1)
    results = [_run(data_root, output_dir, tiny_module)]
    _add_span(data_root, 2, ["blue", "green", "red", "yellow"], seed=2)
    results += [_run(data_root, output_dir, tiny_module), _run(data_root, output_dir, tiny_module)]
    return results, output_dir


def _report(output_dir):
    with open(os.path.join(output_dir, "reports", "latest.html"), encoding="utf-8") as f:
        return html.unescape(f.read())


def test_run_2_skips_the_comparison_with_the_three_class_model_and_says_why(three_runs):
    (first, second, _), _ = three_runs
    assert first[0] == commands.EXIT_OK and "pushed to" in first[1], first[1]
    assert second[0] == commands.EXIT_OK and "pushed to" in second[1], second[1]
    assert ("baseline    the latest blessed model has 3 classes (blue, green, red), this one 4 (blue, green, red, "
            "yellow): added yellow: no comparison with the latest blessed model; only the absolute threshold "
            "applies") in second[1]


def test_the_label_map_and_the_new_model_have_four_classes(three_runs):
    _, output_dir = three_runs
    with open(os.path.join(output_dir, "label_map.json"), encoding="utf-8") as f:
        assert json.load(f)["classes"] == ["blue", "green", "red", "yellow"]
    newest = predict.latest_version_dir(os.path.join(output_dir, "serving", "hubtfx"))
    assert exported_model.read_facts(newest).class_names == ("blue", "green", "red", "yellow")


def test_run_3_compares_with_run_2s_model_like_any_rerun(three_runs):
    (_, _, third), output_dir = three_runs
    assert third[0] == commands.EXIT_OK, third[1]
    assert "not pushed again" in third[1] and "baseline    " not in third[1], third[1]
    report = _report(output_dir)
    assert "Baseline: the latest blessed model" in report and "Not compared" not in report


def test_the_blessing_records_the_skipped_baseline_and_the_report_of_run_2_shows_it(three_runs):
    _, output_dir = three_runs
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(output_dir, "metadata.sqlite")))
    blessings = sorted(store.get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    skipped = [b.custom_properties[comparability.BASELINE_SKIPPED_REASON].string_value
               if comparability.BASELINE_SKIPPED_REASON in b.custom_properties else "" for b in blessings]
    assert len(blessings) == 3 and not skipped[0] and not skipped[2]
    assert skipped[1].endswith("added yellow")
    reports = sorted(glob.glob(os.path.join(output_dir, "reports", "run-*.html")))
    with open(reports[1], encoding="utf-8") as f:
        second = html.unescape(f.read())
    assert "Not compared with the latest blessed model" in second and "added yellow" in second
    assert "only the absolute threshold gated this model" in second


def test_the_evaluator_checks_the_signature_the_eval_config_names():
    text = json_format.MessageToJson(pipeline_lib.eval_config(PipelineConfig()))
    assert executor.eval_signature({"eval_config": text}) == exported_model.EXAMPLES_SIGNATURE
    assert executor.eval_signature({"eval_config": "{}"}) == "serving_default"
