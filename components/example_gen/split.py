"""The train/eval split rule of ImageFolderExampleGen: a stable hash of the path, rebalanced so no class starves.

Rule, per class (the user-facing text is in README.md, "Your own data"):

1. Hash: an image's bucket is sha256 of the serialized tf.train.Feature holding its path relative to the
   class-folder root (b"daisy/1.jpg"), modulo the total number of hash buckets (100: one per percent). The
   image is in 'eval' if its bucket >= the train buckets (100 - eval_percent), else in 'train'. This is exactly
   TFX's `hash_buckets` split on `partition_feature_name="filename"`
   (tfx/components/example_gen/base_example_gen_executor.py, `_PartitionFn`), which hubtfx used before, so
   existing images keep their split.
2. Rebalance: a class whose used images would all land in one split gets one image moved to the other split:
   - all in 'eval'  -> the one nearest the boundary (lowest bucket, then path) moves to 'train';
   - all in 'train' -> the one nearest the boundary (highest bucket, then path) moves to 'eval', unless the
     class has a single image, which stays in 'train' (a class must be learned before it can be evaluated).

So every class with at least 2 decodable images has both training and eval examples, and an image's split
only changes when its class stops (or starts) needing the move; all other images never change split when data
is added. A class with one image has no eval example: the run reports it (see components/gate/coverage.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict, Iterable, Optional

import tensorflow as tf
from tfx.proto import example_gen_pb2

TRAIN = "train"
EVAL = "eval"
SPLIT_NAMES = (TRAIN, EVAL)  # Partition index 0 and 1, in the order of the component's output_config.


@dataclasses.dataclass(frozen=True)
class SplitRule:
    """Buckets [0, train_buckets) go to 'train', [train_buckets, total_buckets) to 'eval'."""

    train_buckets: int
    total_buckets: int

    @classmethod
    def from_eval_percent(cls, eval_percent: int) -> "SplitRule":
        return cls(train_buckets=100 - eval_percent, total_buckets=100)

    @classmethod
    def from_output_config(cls, output_config: example_gen_pb2.Output) -> "SplitRule":
        """The rule of the component's output_config: splits 'train' then 'eval', in hash buckets.

        Raises:
          ValueError: the output_config does not have exactly the splits 'train' and 'eval', in that order.
        """
        splits = output_config.split_config.splits
        names = tuple(split.name for split in splits)
        if names != SPLIT_NAMES:
            raise ValueError(f"ImageFolderExampleGen writes the splits {SPLIT_NAMES}, got {names}")
        return cls(train_buckets=splits[0].hash_buckets, total_buckets=splits[0].hash_buckets + splits[1].hash_buckets)

    def bucket(self, relative_path: str) -> int:
        """The hash bucket of an image's path relative to the class-folder root, in [0, total_buckets)."""
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[relative_path.encode("utf-8")]))
        return int(hashlib.sha256(feature.SerializeToString(deterministic=True)).hexdigest(), 16) % self.total_buckets

    def hashed_split(self, relative_path: str) -> str:
        """The split by hash alone (step 1 of the rule)."""
        return TRAIN if self.bucket(relative_path) < self.train_buckets else EVAL

    def rebalance(self, relative_paths: Iterable[str]) -> Dict[str, str]:
        """Step 2 for the used images of ONE class: {path: split} of the images moved away from their hashed
        split (empty when the class already has images in both splits)."""
        ranked = sorted((self.bucket(path), path) for path in set(relative_paths))
        if not ranked:
            return {}
        in_eval = [path for bucket, path in ranked if bucket >= self.train_buckets]
        if len(in_eval) == len(ranked):
            return {ranked[0][1]: TRAIN}
        if not in_eval and len(ranked) > 1:
            return {ranked[-1][1]: EVAL}
        return {}

    def assign(self, relative_paths: Iterable[str]) -> Dict[str, str]:
        """{path: split} of every used image of ONE class, after rebalancing."""
        paths = list(relative_paths)
        return {**{path: self.hashed_split(path) for path in paths}, **self.rebalance(paths)}

    def split_index(self, relative_path: str, moved: Optional[Dict[str, str]] = None) -> int:
        """Partition index (into SPLIT_NAMES) of an image, given the moves `rebalance` decided for its class."""
        split = (moved or {}).get(relative_path) or self.hashed_split(relative_path)
        return SPLIT_NAMES.index(split)

