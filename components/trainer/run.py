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

from components.trainer import data, export, model, stages
from components.trainer.params import TrainingParams
from pipeline.hub_modules import contract as module_contract

HISTORY_FILE = "training_history.json"
LABEL_MAP_FILE = "label_map.json"


def read_class_names(train_file_pattern: str) -> List[str]:
    """Class names from the label map ImageFolderExampleGen writes beside its splits (index = class id)."""
    examples_dir = os.path.dirname(os.path.dirname(train_file_pattern))
    with tf.io.gfile.GFile(os.path.join(examples_dir, LABEL_MAP_FILE)) as f:
        return list(json.load(f)["classes"])


def module_dir(base_model: str) -> str:
    """The imported Hub module's folder: TFX appends Model artifacts' 'Format-Serving' to the imported URI."""
    if tf.io.gfile.exists(os.path.join(base_model, "saved_model.pb")):
        return base_model
    return os.path.dirname(base_model.rstrip("/"))


def check_transform_matches_module(tft_output: tft.TFTransformOutput, module_path: str):
    """Fails before training, naming both shapes, when Transform does not produce what the module expects."""
    expected = module_contract.read_contract(module_path)
    produced = tft_output.transformed_feature_spec()[data.preprocessing.TRANSFORMED_IMAGE_KEY].shape
    if list(produced) != [expected.image_size[0], expected.image_size[1], expected.channels]:
        raise ValueError(
            f"Transform produces images of shape {list(produced)} but the module at {module_path} expects "
            f"{[*expected.image_size, expected.channels]}. Rerun the pipeline so that Transform picks up the "
            f"module's contract, or set image_size in the config to the module's input size.")
    return expected


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains stage 1 (head on cached features) and stage 2 (fine-tuning), keeps the better, exports."""
    params = TrainingParams.from_custom_config(fn_args.custom_config or {})
    tf_keras.utils.set_random_seed(params.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    module_path = module_dir(fn_args.base_model)
    contract = check_transform_matches_module(tft_output, module_path)
    class_names = read_class_names(fn_args.train_files[0])
    logging.info("Training a %d-class head on %s (%s)", len(class_names), module_path, ", ".join(class_names))

    def split(files, shuffle):
        return data.transformed_dataset(files, fn_args.data_accessor, tft_output, params.batch_size,
                                        shuffle=shuffle, seed=params.seed)

    train, evaluation = split(fn_args.train_files, True), split(fn_args.eval_files, False)
    work_dir = tempfile.mkdtemp(prefix="hubtfx-trainer-")
    try:
        head = model.build_head(len(class_names), params.dropout)
        frozen = model.frozen_backbone(module_path)
        stage1 = stages.train_head(train, evaluation, frozen, head, params, work_dir, fn_args.model_run_dir)
        logging.info("Stage 1: eval accuracy %.4f, loss %.4f", stage1.eval_accuracy, stage1.eval_loss)
        classifier, chosen, results = model.build_classifier(frozen, head, contract.image_size), stage1, [stage1]

        if params.fine_tune_enabled:
            backbone = model.fine_tunable_backbone(module_path, params.fine_tune_blocks)
            tuned = model.build_classifier(backbone, head, contract.image_size)
            snapshot = [w.numpy() for w in tuned.trainable_weights]
            steps = -(-stage1.train_examples // params.batch_size)
            stage2 = stages.fine_tune(train, evaluation, tuned, backbone.selected_variable_names, params, steps,
                                      fn_args.model_run_dir)
            logging.info("Stage 2: eval accuracy %.4f, loss %.4f", stage2.eval_accuracy, stage2.eval_loss)
            results.append(stage2)
            if stage2.better_than(stage1):
                classifier, chosen = tuned, stage2
            else:
                for weight, value in zip(tuned.trainable_weights, snapshot):
                    weight.assign(value)
        logging.info("Keeping %s (eval accuracy %.4f).", chosen.name, chosen.eval_accuracy)
        write_history(fn_args.model_run_dir, results, chosen, class_names, module_path)
        export.export_serving_model(classifier, tft_output, class_names, fn_args.serving_model_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


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
