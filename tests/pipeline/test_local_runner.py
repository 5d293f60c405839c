"""End to end: the real local pipeline (LocalDagRunner, Beam, TFT, TFMA, SQLite MLMD) on tiny generated data."""
import dataclasses
import glob
import io
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image
from ml_metadata.metadata_store import metadata_store

from hubtfx.components.trainer import exported_model
from hubtfx.components.transform import image_ops
from hubtfx.pipeline import local_runner
from hubtfx.pipeline.hub_modules import module_resolution


def _grayscale_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def _example(image_bytes: bytes) -> bytes:
    feature = {"image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_model_is_blessed_and_pushed_in_the_serving_layout(finished_run):
    config, _, summary = finished_run
    assert summary.blessed and summary.pushed
    assert summary.files_seen == summary.examples_written == 40
    assert os.path.dirname(summary.pushed_path) == config.push_base_dir
    assert os.path.basename(summary.pushed_path).isdigit()
    assert os.path.isfile(os.path.join(summary.pushed_path, "saved_model.pb"))
    assert summary.eval_accuracy is not None and 0.0 <= summary.eval_accuracy <= 1.0
    assert set(summary.stage_outcomes) == {"stage1", "stage2"}
    assert "cross-validation" in summary.stage_outcomes["stage1"]
    assert "pushed to" in summary.render()


def test_pushed_model_classifies_raw_examples_and_bytes_identically(finished_run, sample_root):
    _, _, summary = finished_run
    model = tf.saved_model.load(summary.pushed_path)  # the Hub module's folder is gone by now
    files = sorted(glob.glob(os.path.join(sample_root, "*", "*")))
    picked = [next(f for f in files if f.endswith(".png")), next(f for f in files if f.endswith(".jpg"))]
    raw = [open(f, "rb").read() for f in picked] + [_grayscale_png()]
    by_example = model.signatures[exported_model.EXAMPLES_SIGNATURE](examples=tf.constant([_example(r) for r in raw]))
    by_bytes = model.signatures[exported_model.DEFAULT_SIGNATURE](image_bytes=tf.constant(raw))
    probabilities = by_example["probabilities"].numpy()
    assert probabilities.shape == (3, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, by_bytes["probabilities"].numpy(), rtol=1e-6, atol=1e-7)
    names = sorted(os.listdir(sample_root))
    assert [n.decode() for n in by_example["class_name"].numpy()] == [
        names[i] for i in by_example["class_id"].numpy()]


def test_lineage_names_the_module_and_the_training_choices_are_recorded(finished_run):
    config, module, _ = finished_run
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    imported = [a for a in store.get_artifacts_by_type("Model") if "sha256" in a.custom_properties]
    assert imported and imported[0].custom_properties["sha256"].string_value == module.sha256
    model_run = store.get_artifacts_by_type("ModelRun")[-1]
    history = json.load(open(os.path.join(model_run.uri, "training_history.json")))
    assert set(history["stages"]) == {"stage1", "stage2"}
    assert history["stages"]["stage2"]["unfrozen_variables"]
    assert len(history["stages"]["stage2"]["history"]["val_loss"]) >= 1
    assert history["stage1_head"]["c"] > 0 and history["stage1_head"]["levels"][-1] == "default"
    assert glob.glob(os.path.join(model_run.uri, "stage2", "**", "events.out.tfevents.*"), recursive=True)


def test_a_local_run_makes_no_network_attempt(finished_run, network_attempts):
    """The whole local pipeline ran under the guard (tests/conftest.py): no lookup or connection left the machine."""
    assert finished_run[2].pushed and network_attempts == []


@pytest.mark.parametrize("runner_args, reaches_out", [
    (["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"], True),
    (local_runner.LOCAL_BEAM_ARGS, False),
])
def test_beams_default_runner_reaches_for_the_network_and_the_local_runners_does_not(network_guard, runner_args,
                                                                                     reaches_out):
    """The guard sees what it guards against: Beam 2.74's DirectRunner looks up github.com to download Prism (and
    still computes the result after the refusal); the runner the local pipeline names does not."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to
    attempts = []
    with network_guard(attempts):
        with beam.Pipeline(options=PipelineOptions(runner_args)) as pipeline:
            assert_that(pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    assert any("github.com" in host for host, _ in attempts) is reaches_out, attempts


@pytest.mark.parametrize("workers", [1, 2])
def test_tfx_builds_no_package_of_itself_for_local_beam_workers(workers):
    """TFX's Beam executors copy and package the whole TFX installation (42 MB, ~1.5 s, never deleted) unless the
    Beam arguments say how workers get their dependencies; local workers import the installed TFX."""
    from tfx.utils import dependency_utils
    args = local_runner.local_beam_args(workers)
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_a_second_run_with_nothing_changed_reuses_the_cache(finished_run, tiny_module):
    config, _, _ = finished_run
    config = dataclasses.replace(config, hub_handle=tiny_module)
    module = module_resolution.resolve(config)
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    executions_before = len(store.get_executions())
    summary = local_runner.run_local(config, module)
    new = store.get_executions()[executions_before:]
    cached = [e for e in new if e.last_known_state == e.CACHED]
    assert len(cached) >= 3, "ExampleGen, StatisticsGen and Transform should come from the cache"
    # The run's timing says so too, and shows what a cache hit costs.
    statuses = {c.component: c.status for c in summary.timing.components}
    assert statuses["ImageFolderExampleGen"] == statuses["StatisticsGen"] == statuses["Transform"] == "cached"
    assert sum(c.status == "cached" for c in summary.timing.components) == len(cached)


def test_transform_resizes_as_the_module_contract_says_for_training_and_serving(finished_run, sample_root):
    """The tiny module's contract asks for bicubic; the Transform graph (which the Trainer applies and the exported
    model embeds) must produce exactly image_ops' bicubic pixels, not the bilinear default."""
    config, module, _ = finished_run
    assert module.resize_method == "bicubic"
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    graph = tft.TFTransformOutput(store.get_artifacts_by_type("TransformGraph")[-1].uri)
    raw = open(sorted(glob.glob(os.path.join(sample_root, "*", "*.png")))[0], "rb").read()
    transformed = graph.transform_features_layer()({"image_raw": tf.constant([[raw]])})["image"].numpy()
    size = module.image_size
    # Graph and eager execution may round the last bit differently; the methods differ by far more.
    np.testing.assert_allclose(transformed, image_ops.decode_batch(tf.constant([raw]), size, (0, 1), "bicubic"),
                               atol=1e-6)
    assert np.abs(transformed - image_ops.decode_batch(tf.constant([raw]), size, (0, 1), "bilinear")).max() > 1e-3


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_follows_the_component_sequence_on_a_terminal_only(terminal, monkeypatch, capsys, caplog):
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    from hubtfx.components.trainer import progress  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(progress, "bars_wanted", lambda: terminal)
    absl_logger = logging.getLogger("absl")
    filters_before = list(absl_logger.filters)
    # A pipeline run earlier in this process leaves absl at WARNING (TF's SavedModel export "restores" it there;
    # the CLI sets INFO again, see commands.configure_logging).
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with caplog.at_level(logging.INFO), local_runner.component_progress(2):
            for node in ("ExampleGen", "Trainer"):
                absl_logging.info("Component %s is running.", node)
                absl_logging.info("Component %s is finished.", node)
    finally:
        absl_logging.set_verbosity(verbosity)
    err = capsys.readouterr().err
    if terminal:  # tqdm's rate field names the unit
        assert "[pipeline]" in err and "component/s" in err
    else:
        assert "component/s" not in err and "\r" not in err
    # The log lines reach the log either way (an in-process CLI run earlier in the session prefixes them with
    # "[pipeline] ", commands.configure_logging), and the bar's hook is gone afterwards.
    messages = [r.getMessage() for r in caplog.records]
    assert [m[m.index("Component "):] for m in messages if "Component " in m] == [
        "Component ExampleGen is running.", "Component ExampleGen is finished.",
        "Component Trainer is running.", "Component Trainer is finished."]
    assert absl_logger.filters == filters_before
