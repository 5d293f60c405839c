"""The training stages on the tiny real Hub module: one feature pass, the validation slice, stage 2's rollback."""
import logging

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from hubtfx.components.common import contract
from hubtfx.components.trainer import model, progress, run, stages
from hubtfx.components.trainer.params import TrainingParams


def _images(count: int, batch_size: int, seed: int = 0, classes: int = 3) -> tf.data.Dataset:
    """Images whose class shows in one colour channel, so a linear head on the tiny module can learn it."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    images = rng.random((count, 32, 32, 3), dtype=np.float32) * 0.4
    images[np.arange(count), :, :, labels % 3] += 0.5
    return tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64))).batch(batch_size)


class CountingBackbone:
    """The real backbone, counting the images it sees in a variable (Python counters would count traces)."""

    def __init__(self, module_path: str):
        self.layer = model.frozen_backbone(module_path, ("block_02", "block_03", "default"))
        self.images_seen = tf.Variable(0, dtype=tf.int32)

    def __call__(self, images, training=False):
        self.images_seen.assign_add(tf.shape(images)[0])
        return self.layer(images, training=training)


def test_features_of_every_level_come_from_one_pass_in_dataset_order(tiny_module):
    backbone = CountingBackbone(tiny_module)
    train = _images(21, 4)  # the last batch is partial
    features = stages.extract_features(train, stages.feature_extractor(backbone, train.element_spec[0]))
    assert int(backbone.images_seen.numpy()) == 21
    assert {name: level.shape for name, level in features.levels.items()} == {
        "block_02": (21, 16), "block_03": (21, 32), "default": (21, 16)}
    np.testing.assert_array_equal(features.labels, np.arange(21) % 3)


@pytest.mark.parametrize("terminal", [True, False])
def test_the_feature_pass_shows_a_bar_on_a_terminal_and_log_lines_elsewhere(terminal, tiny_module, monkeypatch,
                                                                            capsys, caplog):
    monkeypatch.setattr(progress, "bars_wanted", lambda: terminal)
    monkeypatch.setattr(stages, "_FEATURE_LOG_EVERY", 8)
    train = _images(21, 4)
    with caplog.at_level(logging.INFO):
        stages.extract_features(train, stages.feature_extractor(model.frozen_backbone(tiny_module),
                                                                train.element_spec[0]))
    lines = [r.getMessage() for r in caplog.records if "train features" in r.getMessage()]
    err = capsys.readouterr().err
    if terminal:  # the bar counts; one closing line stays in the log
        assert "[stage 1] train features" in err and "example/s" in err
        assert [line.split(" (")[0] for line in lines] == ["[stage 1] train features: 21 examples"]
    else:
        assert "\r" not in err
        assert [line.split(" (")[0] for line in lines] == [
            "[stage 1] train features: 8 examples", "[stage 1] train features: 16 examples",
            "[stage 1] train features: 21 examples"]


def test_one_trace_serves_every_batch_size(tiny_module):
    extract = stages.feature_extractor(model.frozen_backbone(tiny_module), _images(5, 4).element_spec[0])
    for size in (4, 1, 3):
        extract(tf.zeros([size, 32, 32, 3]))
    assert extract.experimental_get_tracing_count() == 1


def test_an_empty_split_is_an_actionable_error(tiny_module):
    extract = stages.feature_extractor(model.frozen_backbone(tiny_module), _images(5, 4).element_spec[0])
    with pytest.raises(ValueError, match="train split has no examples"):
        stages.extract_features(_images(4, 4).take(0), extract)


def test_the_validation_slice_is_stratified_and_leaves_small_classes_whole():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 2 + [3] * 3)
    held_out = stages.validation_rows(labels, 0.2, seed=0)
    assert [int(held_out[labels == c].sum()) for c in range(4)] == [10, 2, 0, 1]
    np.testing.assert_array_equal(held_out, stages.validation_rows(labels, 0.2, seed=0))
    assert not np.array_equal(held_out, stages.validation_rows(labels, 0.2, seed=1))


@pytest.mark.parametrize("counts", [[777] * 10, [1500] * 2, [60] * 100, [50] * 1000, [900, 100],
                                    [700, 100, 100, 100], [121] * 10])
def test_class_grouping_tells_an_order_by_class_from_a_shuffled_one(counts):
    by_class = np.repeat(np.arange(len(counts)), counts)
    shuffled = np.random.default_rng(1).permutation(by_class)
    assert stages.class_grouping(by_class) > stages.GROUPED_BY_CLASS
    assert abs(stages.class_grouping(shuffled)) < 0.25
    # Half the examples in class order, the other half shuffled: in between.
    half = len(by_class) // 2
    part_grouped = np.concatenate([np.sort(shuffled[:half]), shuffled[half:]])
    assert 0.2 < stages.class_grouping(part_grouped) < 0.85


def test_class_grouping_leaves_sets_a_buffer_mixes_and_single_classes_alone():
    assert stages.class_grouping(np.repeat(np.arange(10), 40)) == 0.0  # 400 < 2 buffers: the shuffle mixes it
    assert stages.class_grouping(np.zeros(1000, dtype=np.int64)) == 0.0
    assert stages.class_grouping(np.repeat([3, 7], 600)) > stages.GROUPED_BY_CLASS  # ids need not start at 0


def test_split_images_partitions_the_training_images_by_row():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.float32)
    train = tf.data.Dataset.from_tensor_slices((images, np.arange(10))).batch(3)
    held_out = np.zeros(10, bool)
    held_out[[1, 4, 7]] = True
    fitting, validation = stages.split_images(train, held_out, batch_size=4, seed=0)
    seen_fitting = sorted(int(y) for _, labels in fitting for y in labels)
    seen_validation = sorted(int(y) for _, labels in validation for y in labels)
    assert seen_fitting == [0, 2, 3, 5, 6, 8, 9] and seen_validation == [1, 4, 7]


def _params(**overrides) -> TrainingParams:
    # stage2_significance 1: on toy slices no stage 2 could pass the sign test, and these tests are about the rest.
    values = dict(batch_size=8, stage2_epochs=2, min_validation_examples=3, cv_folds=3, augment=False,
                  stage2_significance=1.0)
    values.update(overrides)
    return TrainingParams(**values)


def test_a_diverging_stage_2_is_rolled_back_to_stage_1(tmp_path, tiny_module):
    levels = contract.read_contract(tiny_module).feature_levels
    outcome = run.train_both_stages(_images(60, 8), tiny_module, 3, _params(stage2_learning_rate=1e3),
                                    str(tmp_path), levels)
    stage1, stage2 = outcome.stages
    assert outcome.chosen == "stage1" and stage2.best_epoch == 0
    assert stage2.outcome.startswith("rolled back to stage 1") and "--stage2-learning-rate" in stage2.outcome
    images = next(iter(_images(60, 60)))[0]
    np.testing.assert_allclose(outcome.classifier(images).numpy(), outcome.stage1_classifier(images).numpy())
    assert not stage2.validation_loss <= stage1.validation_loss  # what stage 2 reached (NaN or worse), not kept


def test_stage_2_is_skipped_with_a_reason_when_the_validation_slice_is_too_small(tmp_path, tiny_module):
    outcome = run.train_both_stages(_images(12, 4), tiny_module, 3, _params(min_validation_examples=10),
                                    str(tmp_path), ())
    assert outcome.chosen == "stage1"
    assert outcome.stages[1].outcome.startswith("skipped: the validation slice would hold 3 examples")


def test_the_sign_test_counts_only_the_images_the_stages_disagree_on():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    stage1 = np.array([0, 1, 2, 1, 2, 0, 1, 2])  # right on the first 3
    stage2 = np.array([0, 1, 0, 0, 1, 2, 0, 2])  # breaks image 2, fixes images 3-6
    test = stages.SignTest.compare(stage1, stage2, labels)
    assert (test.fixed, test.broken) == (4, 1)
    assert test.p_value == pytest.approx(6 / 32)  # P(Binomial(5, 1/2) >= 4) = (5 + 1) / 32
    assert stages.SignTest(4, 0).p_value == pytest.approx(1 / 16) and stages.SignTest(0, 0).p_value == 1.0
    assert stages.SignTest.could_reach(4, 0.1) and not stages.SignTest.could_reach(3, 0.1)


def test_stage_2_is_not_judged_when_no_gain_could_be_significant(tmp_path, tiny_module):
    outcome = run.train_both_stages(_images(60, 8), tiny_module, 3,
                                    _params(stage2_significance=1e-9), str(tmp_path), ())
    stage1, stage2 = outcome.stages
    assert outcome.chosen == "stage1" and outcome.classifier is outcome.stage1_classifier
    assert stage2.outcome.startswith("skipped: stage 1 misclassifies") and "stage2_significance 1e-09" in stage2.outcome
    assert stage2.validation_examples == 12 and not stage2.history  # no fine-tuning epoch ran
    assert stage1.validation_examples == 12  # the slice stage 1's validation loss was measured on


def test_stage_2_is_kept_only_when_it_passes_the_sign_test():
    labels = np.zeros(10, np.int64)
    stage1 = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    few_fixes = np.array([0, 0, 0, 1, 0, 0, 0, 1, 1, 1])  # fixes 3, breaks 1: p = 5/16
    many_fixes = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])  # fixes 5, breaks 0: p = 1/32
    refused = stages.StageResult("stage2", best_epoch=3, outcome="kept: validation loss 0.3 at epoch 3")
    stages.judge_by_sign_test(refused, stage1, few_fixes, labels, 0.1)
    assert refused.best_epoch == 0 and (refused.sign_test.fixed, refused.sign_test.broken) == (3, 1)
    assert refused.outcome.startswith("not kept: its best epoch (3) fixed 3 and broke 1") and "p 0.312" in refused.outcome
    kept = stages.StageResult("stage2", best_epoch=3, outcome="kept: validation loss 0.3 at epoch 3")
    stages.judge_by_sign_test(kept, stage1, many_fixes, labels, 0.1)
    assert kept.best_epoch == 3 and kept.outcome.endswith("fixed 5 and broke 0 of stage 1's 10 validation "
                                                          "predictions (sign-test p 0.031)")


def test_the_same_data_and_seed_give_the_same_model(tmp_path, tiny_module):
    run.make_deterministic(0)
    first = run.train_both_stages(_images(45, 8), tiny_module, 3, _params(augment=True),
                                  str(tmp_path / "a"), ("block_02", "block_03"))
    run.make_deterministic(0)
    second = run.train_both_stages(_images(45, 8), tiny_module, 3, _params(augment=True),
                                   str(tmp_path / "b"), ("block_02", "block_03"))
    assert first.chosen == second.chosen and first.head_fit.c == second.head_fit.c
    assert first.stages[1].history == second.stages[1].history
    images = next(iter(_images(45, 45)))[0]
    np.testing.assert_array_equal(first.classifier(images).numpy(), second.classifier(images).numpy())


def _callback_on_a_model(reference, patience=2):
    net = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    callback = stages.KeepBestOnValidation(reference, patience)
    callback.set_model(net)
    callback.on_train_begin()
    return net, callback


def test_an_epoch_must_lower_the_loss_without_lowering_accuracy_to_be_kept():
    net, callback = _callback_on_a_model({"loss": 1.0, "accuracy": 0.8})
    start = net.get_weights()
    net.set_weights([w + 1 for w in start])
    callback.on_epoch_end(0, {"val_cross_entropy": 0.5, "val_accuracy": 0.7})  # lower loss, worse accuracy: not better
    assert callback.best_epoch == 0 and not net.stop_training
    callback.on_epoch_end(1, {"val_cross_entropy": 0.6, "val_accuracy": 0.8})  # lower loss, same accuracy: better
    assert callback.best_epoch == 2
    kept = net.get_weights()
    net.set_weights([w + 1 for w in kept])
    callback.on_epoch_end(2, {"val_cross_entropy": 0.7, "val_accuracy": 0.9})
    callback.on_epoch_end(3, {"val_cross_entropy": 0.7, "val_accuracy": 0.9})
    assert net.stop_training  # patience 2 ran out
    callback.on_train_end()
    for restored, expected in zip(net.get_weights(), kept):
        np.testing.assert_array_equal(restored, expected)


def test_a_validation_loss_that_blows_up_stops_at_once_and_restores_stage_1():
    net, callback = _callback_on_a_model({"loss": 0.4, "accuracy": 0.9}, patience=5)
    start = net.get_weights()
    net.set_weights([w * 3 for w in start])
    callback.on_epoch_end(0, {"val_cross_entropy": 1.3, "val_accuracy": 0.5})
    assert net.stop_training and "blew up to 1.3" in callback.stopped_because
    callback.on_train_end()
    for restored, expected in zip(net.get_weights(), start):
        np.testing.assert_array_equal(restored, expected)


@pytest.mark.parametrize("terminal", [True, False])
def test_epochs_are_logged_in_both_modes_and_a_bar_is_drawn_only_on_a_terminal(terminal, monkeypatch, capsys,
                                                                                caplog):
    monkeypatch.setattr(progress, "bars_wanted", lambda: terminal)
    classifier = tf_keras.Sequential([tf_keras.layers.Dense(3)])
    classifier.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = stages.ProgressLogger("stage 2", 2)
    with caplog.at_level(logging.INFO):
        classifier.fit(np.zeros((8, 2), np.float32), np.zeros(8, np.int64), batch_size=4, epochs=2, verbose=0,
                       callbacks=[logger])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[stage 2]")]
    assert [line.split(" loss=")[0] for line in lines] == ["[stage 2] epoch 1/2", "[stage 2] epoch 2/2"]
    assert len(logger.train_seconds) == 2
    err = capsys.readouterr().err
    if terminal:
        assert "[stage 2]" in err and "batch 2/2" in err and "epoch" in err
    else:
        assert "[stage 2]" not in err and "\r" not in err
