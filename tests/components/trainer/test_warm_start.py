"""Warm start: the exported head round-trips, and is only reused when classes and shapes match."""
import numpy as np
import pytest

from components.trainer import model, warm_start
from components.trainer.run import read_class_names


def _trained_head(classes=3, features=16):
    head = model.build_head(classes, dropout=0.0)
    head.build((None, features))
    head.set_weights([np.full(w.shape, 0.5, np.float32) for w in head.get_weights()])
    return head


def test_the_saved_head_seeds_a_new_head(tmp_path):
    warm_start.save_head(_trained_head(), ["a", "b", "c"], str(tmp_path))
    weights = warm_start.load_head(str(tmp_path), ["a", "b", "c"])
    fresh = model.build_head(3, dropout=0.2)
    assert warm_start.initialise_head(fresh, weights, 16)
    np.testing.assert_array_equal(fresh.get_weights()[0], np.full((16, 3), 0.5))


def test_changed_classes_or_a_missing_head_mean_training_from_scratch(tmp_path):
    warm_start.save_head(_trained_head(), ["a", "b", "c"], str(tmp_path))
    assert warm_start.load_head(str(tmp_path), ["a", "b", "c", "d"]) is None
    assert warm_start.load_head(str(tmp_path / "no_model"), ["a", "b", "c"]) is None
    assert warm_start.load_head("", ["a"]) is None


def test_a_head_for_another_feature_size_is_not_applied(tmp_path):
    warm_start.save_head(_trained_head(features=16), ["a", "b", "c"], str(tmp_path))
    fresh = model.build_head(3, dropout=0.2)
    assert not warm_start.initialise_head(fresh, warm_start.load_head(str(tmp_path), ["a", "b", "c"]), 32)
    assert not np.allclose(fresh.get_weights()[0], 0.5)


def test_class_names_of_a_span_window_come_from_the_longest_consistent_label_map(tmp_path):
    patterns = []
    for span, classes in ((1, ["a", "b"]), (2, ["a", "b", "c"])):
        (tmp_path / str(span) / "Split-train").mkdir(parents=True)
        (tmp_path / str(span) / "label_map.json").write_text('{"classes": %s}' % str(classes).replace("'", '"'))
        patterns.append(str(tmp_path / str(span) / "Split-train" / "*"))
    assert read_class_names(patterns) == ["a", "b", "c"]
    (tmp_path / "1" / "label_map.json").write_text('{"classes": ["b", "a"]}')
    with pytest.raises(ValueError, match="class ids disagree"):
        read_class_names(patterns)
