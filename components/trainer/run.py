"""Trainer entry point (`run_fn`), referenced by dotted path from the pipeline."""
import json
import logging
import os
import shutil
import tempfile
from typing import List

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from components.trainer import data, export, exported_model, model, stages, warm_start
from components.trainer.params import TrainingParams
from pipeline.hub_modules import contract as module_contract

HISTORY_FILE = "training_history.json"
LABEL_MAP_FILE = "label_map.json"


def read_class_names(train_file_patterns: List[str]) -> List[str]:
    """Class names from the label maps ImageFolderExampleGen writes beside its splits (index = class id).

    With a window of spans there is one Examples artifact per span. The persistent label map only appends
    classes, so every span's map is a prefix of the newest, longest one, which covers all their ids.
    """
    maps = []
    for pattern in train_file_patterns:
        examples_dir = os.path.dirname(os.path.dirname(pattern))
        with tf.io.gfile.GFile(os.path.join(examples_dir, LABEL_MAP_FILE)) as f:
            maps.append(list(json.load(f)["classes"]))
    longest = max(maps, key=len)
    inconsistent = [m for m in maps if longest[:len(m)] != m]
    if inconsistent:
        raise ValueError(f"The spans' class ids disagree ({inconsistent[0]} vs {longest}): the spans were ingested "
                         "with different label maps. Train on a window of spans ingested with the same label map.")
    return longest


def module_dir(base_model: str) -> str:
    """The imported Hub module's folder: TFX appends Model artifacts' 'Format-Serving' to the imported URI."""
    if tf.io.gfile.exists(os.path.join(base_model, "saved_model.pb")):
        return base_model
    return os.path.dirname(base_model.rstrip("/"))


def check_transform_matches_module(tft_output: tft.TFTransformOutput, module_path: str):
    """Fails before training, naming both shapes, when Transform does not produce what the module expects."""
    try:
        expected = module_contract.read_contract(module_path)
    except module_contract.ContractError as e:
        logging.warning("Cannot check Transform's output against the module (%s); trusting the config.", e)
        return None
    produced = tft_output.transformed_feature_spec()[data.preprocessing.TRANSFORMED_IMAGE_KEY].shape
    if list(produced) != [expected.image_size[0], expected.image_size[1], expected.channels]:
        raise ValueError(
            f"Transform produces images of shape {list(produced)} but the module at {module_path} expects "
            f"{[*expected.image_size, expected.channels]}. Rerun the pipeline so that Transform picks up the "
            f"module's contract, or set image_size in the config to the module's input size.")
    return expected


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across several visible GPUs (e.g. a Vertex/Kubeflow GPU node); the default otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logging.info("Training on %d GPUs with MirroredStrategy.", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains stage 1 (head on cached features) and stage 2 (fine-tuning), keeps the better, exports."""
    params = TrainingParams.from_custom_config(fn_args.custom_config or {})
    tf_keras.utils.set_random_seed(params.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    module_path = module_dir(fn_args.base_model)
    check_transform_matches_module(tft_output, module_path)
    image_size = tft_output.transformed_feature_spec()[data.preprocessing.TRANSFORMED_IMAGE_KEY].shape[:2]
    class_names = read_class_names(fn_args.train_files)
    logging.info("Training a %d-class head on %s (%s)", len(class_names), module_path, ", ".join(class_names))

    def split(files, shuffle):
        return data.transformed_dataset(files, fn_args.data_accessor, tft_output, params.batch_size,
                                        shuffle=shuffle, seed=params.seed)

    train, evaluation = split(fn_args.train_files, True), split(fn_args.eval_files, False)
    work_dir = tempfile.mkdtemp(prefix="hubtfx-trainer-")
    try:
        with distribution_strategy().scope():
            classifier, results, chosen = train_both_stages(
                train, evaluation, module_path, image_size, len(class_names), params, work_dir,
                fn_args.model_run_dir, warm_head=warm_start.load_head(params.warm_start_from, class_names))
        write_history(fn_args.model_run_dir, results, chosen, class_names, module_path)
        module = (fn_args.custom_config or {}).get(exported_model.MODULE_CONFIG_KEY) or {}
        export.export_serving_model(classifier, tft_output, class_names, fn_args.serving_model_dir,
                                    module_handle=module.get("handle", ""), module_sha256=module.get("sha256", ""))
        warm_start.save_head(classifier.get_layer("head"), class_names, fn_args.serving_model_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def train_both_stages(train, evaluation, module_path, image_size, num_classes, params, work_dir, log_dir,
                      warm_head=None):
    """Stage 1, then (if enabled) stage 2 from stage 1's head; returns the better classifier and both results.

    warm_head: weights of an earlier model's head to start stage 1 from (see warm_start.load_head).
    """
    head = model.build_head(num_classes, params.dropout)
    frozen = model.frozen_backbone(module_path)
    if warm_head is not None:
        features = frozen(tf.zeros([1, int(image_size[0]), int(image_size[1]), 3]))
        warm_start.initialise_head(head, warm_head, int(features.shape[-1]))
    stage1 = stages.train_head(train, evaluation, frozen, head, params, work_dir, log_dir)
    logging.info("Stage 1: eval accuracy %.4f, loss %.4f", stage1.eval_accuracy, stage1.eval_loss)
    if not params.fine_tune_enabled:
        return model.build_classifier(frozen, head, image_size), [stage1], stage1

    backbone = model.fine_tunable_backbone(module_path, params.fine_tune_blocks)
    tuned = model.build_classifier(backbone, head, image_size)
    stage1_weights = [w.numpy() for w in tuned.trainable_weights]
    steps_per_epoch = -(-stage1.train_examples // params.batch_size)
    stage2 = stages.fine_tune(train, evaluation, tuned, backbone.selected_variable_names, params, steps_per_epoch,
                              log_dir, cache_dir=work_dir)
    logging.info("Stage 2: eval accuracy %.4f, loss %.4f", stage2.eval_accuracy, stage2.eval_loss)
    if stage2.better_than(stage1):
        logging.info("Keeping stage 2.")
        return tuned, [stage1, stage2], stage2
    logging.info("Stage 2 did not beat stage 1 on the eval split; keeping stage 1's weights.")
    for weight, value in zip(tuned.trainable_weights, stage1_weights):
        weight.assign(value)
    return tuned, [stage1, stage2], stage1


def write_history(model_run_dir: str, results, chosen, class_names, module_path) -> None:
    """A small JSON of both stages' curves and final eval metrics, for reports (TensorBoard has the rest)."""
    payload = {
        "stages": {r.name: {"history": r.history, "eval_loss": r.eval_loss, "eval_accuracy": r.eval_accuracy,
                            "unfrozen_variables": r.unfrozen_variables} for r in results},
        "chosen_stage": chosen.name,
        "class_names": list(class_names),
        "module": module_path,
    }
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, HISTORY_FILE), "w") as f:
        json.dump(payload, f, indent=2)
