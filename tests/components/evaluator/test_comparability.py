"""The baseline comparability check (field report case 10, issue 13): each way a candidate and the latest blessed
model can differ, on facts and on real (tiny) SavedModels."""
import json
import os

import pytest
import tensorflow as tf

from hubtfx.components.evaluator import comparability
from hubtfx.components.trainer import exported_model
from hubtfx.components.trainer.exported_model import ModelFacts

RGB = ("blue", "green", "red")
SIGNATURES = [exported_model.DEFAULT_SIGNATURE, exported_model.BYTES_SIGNATURE, exported_model.EXAMPLES_SIGNATURE]


def facts(classes=RGB, size=(224, 224), sha="a" * 64, handle="hubtfx:efficientnet_lite0/feature_vector"):
    return ModelFacts(class_names=tuple(classes), image_size=size, module_handle=handle, module_sha256=sha)


def reasons(candidate, baseline, baseline_signatures=SIGNATURES):
    return comparability.incomparable_reasons(candidate, baseline, baseline_signatures,
                                              exported_model.EXAMPLES_SIGNATURE)


def test_the_same_classes_module_and_size_are_comparable():
    assert reasons(facts(), facts()) == []


def test_an_added_class_is_named_with_both_class_lists():
    (reason,) = reasons(facts(RGB + ("yellow",)), facts())
    assert reason == ("the latest blessed model has 3 classes (blue, green, red), this one 4 (blue, green, red, "
                      "yellow): added yellow")


def test_a_removed_class_is_named():
    (reason,) = reasons(facts(("blue", "green")), facts())
    assert "3 classes" in reason and "this one 2" in reason and reason.endswith("removed red")


def test_a_renamed_class_is_an_addition_and_a_removal():
    (reason,) = reasons(facts(("navy", "green", "red")), facts())
    assert reason.endswith("added navy; removed blue")


def test_the_same_classes_with_other_ids_are_not_comparable():
    (reason,) = reasons(facts(("green", "blue", "red")), facts())
    assert reason.endswith("the same classes with other class ids")


def test_another_module_is_named_with_both_hashes():
    (reason,) = reasons(facts(sha="b" * 64, handle="/modules/other"), facts())
    assert "bbbbbbbbbbbb" in reason and "aaaaaaaaaaaa" in reason and "/modules/other" in reason


def test_another_input_size_is_named():
    (reason,) = reasons(facts(size=(32, 32)), facts())
    assert reason == "the latest blessed model takes 224x224 images, this one 32x32"


def test_every_difference_is_listed():
    assert len(reasons(facts(RGB + ("yellow",), size=(32, 32), sha="b" * 64), facts())) == 3


def test_a_baseline_without_the_evaluator_signature_is_not_comparable():
    (reason,) = reasons(facts(), facts(), baseline_signatures=["serving_bytes", "serving_default"])
    assert "no `serving_examples` signature" in reason and "older hubtfx" in reason


def test_facts_an_older_export_does_not_record_are_not_held_against_it():
    assert reasons(facts(), ModelFacts(class_names=RGB)) == []
    (reason,) = reasons(facts(), ModelFacts(class_names=()))
    assert "classes are not recorded" in reason


def _save(folder, signatures, model_facts=None, head_classes=None):
    """A tiny SavedModel with the given signature names (each: serialized strings -> their lengths)."""
    module = tf.Module()
    module.f = tf.function(lambda examples: {"n": tf.strings.length(examples)},
                           input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, folder, signatures={name: module.f.get_concrete_function() for name in signatures})
    if model_facts:
        exported_model.write_facts(folder, model_facts)
    if head_classes:
        os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)
        with open(os.path.join(folder, comparability.LEGACY_CLASSES_FILE), "w", encoding="utf-8") as f:
            json.dump({"classes": list(head_classes)}, f)
    return folder


@pytest.fixture(scope="module")
def candidate_dir(tmp_path_factory):
    return _save(str(tmp_path_factory.mktemp("candidate")), SIGNATURES, facts(RGB + ("yellow",)))


def test_check_reads_the_facts_file_of_both_saved_models(tmp_path, candidate_dir):
    baseline = _save(str(tmp_path / "baseline"), SIGNATURES, facts(RGB + ("yellow",)))
    assert comparability.check(candidate_dir, baseline, exported_model.EXAMPLES_SIGNATURE) is None
    other = _save(str(tmp_path / "other"), SIGNATURES, facts(RGB))
    assert comparability.check(candidate_dir, other, exported_model.EXAMPLES_SIGNATURE).endswith("added yellow")


def test_check_of_a_model_exported_before_the_facts_file_uses_its_warm_start_classes(tmp_path, candidate_dir):
    """Older exports: serving_default on tf.Examples, serving_bytes on images, classes beside the warm-start head."""
    old = _save(str(tmp_path / "old"), ["serving_default", "serving_bytes"], head_classes=RGB)
    reason = comparability.check(candidate_dir, old, exported_model.EXAMPLES_SIGNATURE)
    assert "no `serving_examples` signature" in reason and "added yellow" in reason

