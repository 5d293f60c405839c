"""Field case 11 end to end: classes whose images all hash to one split, and a class of one image.

One real local run (tiny module) shares the module fixture; the label-map test stops at the gate, before
Transform.
"""
import html
import json
import os

import numpy as np
import pytest
from PIL import Image

from hubtfx.components.example_gen.split import EVAL, TRAIN, SplitRule
from hubtfx.pipeline import local_runner
from hubtfx.pipeline.cli import commands
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules import module_resolution
from hubtfx.pipeline.reporting import eval_results, report

COLOURS = {"blue": (40, 70, 215), "green": (40, 185, 60), "red": (215, 40, 40), "yellow": (230, 215, 30),
           "purple": (140, 40, 170), "solo": (120, 120, 120)}
# (images whose path hashes to train, to eval) under the default 20 % eval split.
PLAN = {"blue": (6, 2), "green": (6, 2), "red": (6, 2), "yellow": (0, 3), "purple": (3, 0), "solo": (0, 1)}
# After ExampleGen's rebalancing: (train, eval).
EXPECTED = {"blue": (6, 2), "green": (6, 2), "red": (6, 2), "yellow": (1, 2), "purple": (2, 1), "solo": (1, 0)}


def write_case(root):
    rule, rng = SplitRule.from_eval_percent(20), np.random.default_rng(11)
    for name, (n_train, n_eval) in PLAN.items():
        os.makedirs(os.path.join(root, name))
        want, index = {TRAIN: n_train, EVAL: n_eval}, 0
        while want[TRAIN] or want[EVAL]:
            split = rule.hashed_split(f"{name}/{name}_{index:03d}.png")
            if want[split]:
                want[split] -= 1
                pixels = np.array(COLOURS[name]) * rng.uniform(0.55, 1.0) + rng.normal(0, 28, (32, 32, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(
                    os.path.join(root, name, f"{name}_{index:03d}.png"))
            index += 1


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_module):
    work = tmp_path_factory.mktemp("coverage_run")
    write_case(str(work / "data"))
    config = PipelineConfig(
        data_root=str(work / "data"), output_dir=str(work / "out"), hub_handle=tiny_module,
        fine_tune_blocks="0", accuracy_threshold=0.0, batch_size=8)
    module = module_resolution.resolve(config)
    summary = local_runner.run_local(config, module)
    with open(summary.report_path, encoding="utf-8") as f:
        page = f.read()
    return config, summary, page, report.collect(config, module, local_runner.metadata_connection_config(config))


def test_every_class_is_trained_and_the_summary_counts_match_what_was_evaluated(run):
    _, summary, _, facts = run
    assert {c.name: (c.train, c.eval) for c in summary.classes} == EXPECTED
    # The Evaluator scored exactly those eval examples: its confusion matrix has the same support per class.
    support = {c.name: c.support for c in eval_results.per_class_metrics(facts.evaluation.confusion,
                                                                         facts.class_names)}
    assert support == {name: evaluation for name, (_, evaluation) in EXPECTED.items()}
    assert {m["class"] for m in summary.rebalanced} == {"yellow", "purple", "solo"}


def test_the_single_image_class_is_named_in_the_summary_and_the_report(run):
    _, summary, page, _ = run
    text = summary.render()
    assert "WARNING     class 'solo' has no eval examples (1 training)" in text
    assert text.count("WARNING") == 1
    # The class name is escaped (its quotes as &#39; by Jinja2's autoescape); what a reader sees is the text.
    assert "the evaluation does not cover every class" in page and "Not checked: class 'solo'" in html.unescape(page)
    assert "overall and for each class" not in page
    assert "apply to the overall accuracy only, not to each class" in page


def test_a_label_map_class_without_images_stops_the_run_before_training(tmp_path, tiny_module, capsys):
    write_case(str(tmp_path / "data"))
    out = tmp_path / "out"
    os.makedirs(out)
    with open(out / "label_map.json", "w") as f:  # a class of an earlier run that is no longer in the data
        json.dump({"classes": ["aqua", *sorted(PLAN)]}, f)
    code = commands.main(["run", "--data-root", str(tmp_path / "data"), "--output-dir", str(out), "--hub-handle",
                     tiny_module, "--fine-tune-blocks", "0"])
    error = capsys.readouterr().err
    assert code == commands.EXIT_USAGE, error
    assert "class 'aqua' of the label map has no training examples in the data" in error
    assert "Traceback" not in error
    assert not os.path.exists(out / "serving")
    assert not os.path.exists(out / "pipeline_root" / "hubtfx" / "Transform"), "stopped before Transform"
