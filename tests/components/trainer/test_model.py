"""Fine-tuning selects the top blocks by name and trains nothing else."""
import numpy as np
import tensorflow as tf
import tf_keras

from hubtfx.components.trainer import model


def _vars(*names):
    return [tf.Variable(0.0, name=n) for n in names]


def test_block_index_orders_stem_blocks_head():
    assert model.block_index("stem/conv/kernel:0") == -1
    assert model.block_index("block_07/dw/bn/gamma:0") == 7
    assert model.block_index("backbone/block_12_expand/kernel:0") == 12
    assert model.block_index("head/conv/kernel:0") > model.block_index("block_99/x:0")
    assert model.block_index("dense/kernel:0") is None


def test_top_k_blocks_are_selected_by_name():
    variables = _vars("stem/k", "block_00/k", "block_01/k", "block_01/b", "block_02/k", "head/k")
    names = lambda selected: sorted(v.name for v in selected)  # noqa: E731
    assert names(model.select_fine_tune_variables(variables, 1)) == ["head/k:0"]
    assert names(model.select_fine_tune_variables(variables, 3)) == ["block_01/b:0", "block_01/k:0",
                                                                     "block_02/k:0", "head/k:0"]
    assert model.select_fine_tune_variables(variables, 0) == []
    assert len(model.select_fine_tune_variables(variables, None)) == len(variables)


def test_unstructured_names_fall_back_to_the_last_variables_and_log(caplog):
    variables = _vars(*[f"dense_{i}/kernel" for i in range(20)])
    selected = model.select_fine_tune_variables(variables, 2)
    assert [v.name for v in selected] == [v.name for v in variables[-4:]]
    assert "no block names" in caplog.text


def test_partially_trainable_layer_trains_only_the_top_blocks(tiny_module):
    backbone = model.fine_tunable_backbone(tiny_module, blocks=2)
    classifier = model.build_classifier(backbone, model.build_head(3, 0.0), model.image_spec((32, 32)))
    trainable = {w.name for w in backbone.trainable_weights}
    assert trainable and all(n.startswith(("head/", "block_03/")) for n in trainable)
    assert not any("moving_" in n for n in trainable)

    before = {w.name: w.numpy().copy() for w in backbone.weights}
    model.compile_classifier(classifier, 0.1)
    images = np.random.default_rng(0).uniform(size=(8, 32, 32, 3)).astype("float32")
    classifier.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    changed = {w.name for w in backbone.weights if not np.array_equal(before[w.name], w.numpy())}
    assert changed, "a training step must change the unfrozen variables"
    assert changed <= trainable, f"frozen variables changed: {sorted(changed - trainable)}"


def test_frozen_backbone_has_no_trainable_weights(tiny_module):
    assert model.frozen_backbone(tiny_module).trainable_weights == []


def test_head_outputs_logits_per_class():
    head = model.build_head(5, 0.5)
    assert head(tf.zeros([2, 16])).shape == (2, 5)
    assert isinstance(head, tf_keras.Model)


def test_a_standardising_head_computes_the_fits_logits_and_trains_only_the_dense_layer():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=3.0, scale=[0.1, 1.0, 10.0, 2.0], size=(6, 4)).astype("float32")
    mean, std = x.mean(0), x.std(0)
    kernel = rng.normal(size=(4, 3)).astype("float32")
    bias = rng.normal(size=3).astype("float32")
    head = model.build_head(3, 0.0, mean, std, kernel_l2=0.01)
    model.set_head_weights(head, kernel, bias)
    np.testing.assert_allclose(head(x).numpy(), ((x - mean) / std) @ kernel + bias, rtol=1e-4, atol=1e-4)
    assert {w.name.split("/")[0] for w in head.trainable_weights} == {"logits"}
    # The penalty Keras adds to the loss is kernel_l2 * ||kernel||^2 (head.HeadFit.l2_per_example).
    np.testing.assert_allclose(float(tf.add_n(head.losses)), 0.01 * np.sum(np.square(kernel)), rtol=1e-5)


def test_importing_the_model_module_keeps_autograph_away_from_tf_keras():
    from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=import-outside-toplevel
    prefixes = [getattr(rule, "_prefix", None) for rule in autograph_config.CONVERSION_RULES]
    assert prefixes.count("tf_keras") == 1  # added once, however often skip_tf_keras runs
    from hubtfx.components.trainer import autograph_rules  # pylint: disable=import-outside-toplevel
    autograph_rules.skip_tf_keras()
    assert [getattr(r, "_prefix", None) for r in autograph_config.CONVERSION_RULES].count("tf_keras") == 1
