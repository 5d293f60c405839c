"""The train/eval split rule: TFX's path hash, rebalanced so that no class lands wholly in one split."""
import random

import pytest
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen.component import make_output_config
from hubtfx.components.example_gen.split import EVAL, TRAIN, SplitRule


def _counts(assignment):
    return sum(split == TRAIN for split in assignment.values()), sum(split == EVAL for split in assignment.values())


@pytest.mark.parametrize("eval_percent", [1, 20, 50, 99])
def test_the_hash_is_tfxs_own_so_existing_images_keep_their_split(eval_percent):
    """The rule before rebalancing is exactly TFX's hash_buckets split on 'filename' (what hubtfx used before)."""
    output_config = make_output_config(eval_percent)
    rule = SplitRule.from_output_config(output_config)
    assert rule == SplitRule.from_eval_percent(eval_percent)
    paths = [f"class {i % 7}/été à l'ombre {i}.jpg" for i in range(300)] + ["daisy/1.jpg", "a/[2024].png"]
    for path in paths:
        example = executor_lib.make_example(b"", 0, path.split("/")[0], path)
        expected = base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
            example, 2, [100 - eval_percent, 100], output_config.split_config)
        assert rule.split_index(path) == expected, path


def test_only_the_train_and_eval_split_config_is_accepted():
    config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=8),
        example_gen_pb2.SplitConfig.Split(name="test", hash_buckets=2)]))
    with pytest.raises(ValueError, match="'train', 'eval'"):
        SplitRule.from_output_config(config)


# (images hashed to train, images hashed to eval) -> (train, eval) after rebalancing
@pytest.mark.parametrize("hashed, expected", [
    ((0, 3), (1, 2)),   # the field case's 'yellow': all in eval -> never trained
    ((3, 0), (2, 1)),   # the field case's 'purple': all in train -> never evaluated
    ((0, 1), (1, 0)),   # one image: it must be trained; it cannot also be evaluated
    ((1, 0), (1, 0)),
    ((0, 2), (1, 1)),
    ((2, 0), (1, 1)),
    ((9, 3), (9, 3)),   # a class in both splits is never touched
    ((1, 1), (1, 1)),
])
@pytest.mark.parametrize("eval_percent", [20, 50])
def test_no_class_with_two_or_more_images_lands_wholly_in_one_split(hashed, expected, eval_percent, names_hashing_to):
    rule = SplitRule.from_eval_percent(eval_percent)
    paths = names_hashing_to(rule, "yellow", *hashed)
    assignment = rule.assign(paths)
    assert _counts(assignment) == expected
    moved = rule.rebalance(paths)
    assert len(moved) == (hashed != expected)
    assert all(assignment[p] == rule.hashed_split(p) for p in paths if p not in moved)


def test_the_image_nearest_the_boundary_is_the_one_moved(names_hashing_to):
    rule = SplitRule.from_eval_percent(20)
    all_eval = names_hashing_to(rule, "yellow", 0, 4)
    (moved,) = rule.rebalance(all_eval)
    assert rule.bucket(moved) == min(rule.bucket(p) for p in all_eval)
    all_train = names_hashing_to(rule, "purple", 4, 0)
    (moved,) = rule.rebalance(all_train)
    assert rule.bucket(moved) == max(rule.bucket(p) for p in all_train)


@pytest.mark.parametrize("eval_percent", [1, 20, 50, 99])
def test_random_classes_always_have_training_examples_and_eval_examples_from_two_images(eval_percent):
    rule, rng = SplitRule.from_eval_percent(eval_percent), random.Random(eval_percent)
    for trial in range(200):
        paths = [f"c{trial}/{rng.getrandbits(32):08x}.jpg" for _ in range(rng.randint(1, 6))]
        train, evaluation = _counts(rule.assign(paths))
        assert train >= 1 and (evaluation >= 1 or len(set(paths)) == 1), (paths, train, evaluation)


def test_adding_images_moves_no_image_except_the_one_the_rebalancing_moved():
    """Growing a class one image at a time: an image changes split only if it is (or was) the moved one."""
    rule, rng = SplitRule.from_eval_percent(20), random.Random(0)
    for trial in range(50):
        paths, before, moved_before = [], {}, {}
        for _ in range(8):
            paths.append(f"c{trial}/{rng.getrandbits(32):08x}.jpg")
            after, moved_after = rule.assign(paths), rule.rebalance(paths)
            changed = {p for p in before if before[p] != after[p]}
            assert changed <= set(moved_before) | set(moved_after), (paths, changed)
            before, moved_before = after, moved_after


def test_the_field_case_after_growing_yellow_returns_the_moved_image_to_its_hashed_split(names_hashing_to):
    rule = SplitRule.from_eval_percent(20)
    yellow = names_hashing_to(rule, "yellow", 0, 3)
    (moved,) = rule.rebalance(yellow)
    assert rule.assign(yellow)[moved] == TRAIN
    grown = yellow + names_hashing_to(rule, "yellow", 1, 0, prefix="new")
    assert rule.rebalance(grown) == {}
    assert rule.assign(grown)[moved] == EVAL
