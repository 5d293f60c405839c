"""Field report case 04 (issue 13): the request bodies the README documents, against the pushed model.

Each body goes through TF Serving's JSON -> tensor conversion (tests/pipeline/serving/tf_serving_rest.py, a port of
tensorflow_serving/util/json_tensor.cc) into the signature TF Serving or Vertex AI would pick. Before the fix
the default signature took tf.Examples, so a Vertex body failed as a whole ("Could not parse example input").
"""
import base64
import importlib.util
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hubtfx.components.trainer import exported_model
from hubtfx.pipeline import pipeline as pipeline_lib

_REST = importlib.util.spec_from_file_location("tf_serving_rest", os.path.join(os.path.dirname(__file__),
                                                                               "tf_serving_rest.py"))
tf_serving_rest = importlib.util.module_from_spec(_REST)
_REST.loader.exec_module(tf_serving_rest)

README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")
PLACEHOLDER = re.compile(r'"<base64 of (photo\d)\.(jpg|png)>"')


def _example(image_bytes: bytes) -> bytes:
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))
    return tf.train.Example(features=tf.train.Features(feature={"image_raw": feature})).SerializeToString()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def model(model_dir):
    return tf.saved_model.load(model_dir)


@pytest.fixture(scope="module")
def model_dir(finished_run):
    # The fixture run's own push: other tests push later versions into the same folder with other settings.
    _, _, summary = finished_run
    return summary.pushed_path


@pytest.fixture(scope="module")
def photos(sample_root):
    """photo1 as a JPEG and photo2 as a PNG of the same sample image, as in the README's bodies."""
    folder = os.path.join(sample_root, sorted(os.listdir(sample_root))[0])
    with Image.open(os.path.join(folder, sorted(os.listdir(folder))[0])) as image:
        image = image.convert("RGB")
        jpeg, png = io.BytesIO(), io.BytesIO()
        image.save(jpeg, format="JPEG", quality=95)
        image.save(png, format="PNG")
    return {"photo1.jpg": jpeg.getvalue(), "photo2.png": png.getvalue()}


def readme_bodies():
    """The JSON request bodies of the README's 'Requests to TF Serving or a Vertex AI endpoint' paragraph."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("**Requests to TF Serving or a Vertex AI endpoint.**"):]
    section = section[:section.index("\n**", 1)]
    return re.findall(r"```json\n(.*?)\n```", section, flags=re.S)


def _reference(model, images):
    """What the tf.Example signature (the Evaluator's path) says about the same bytes."""
    outputs = model.signatures[exported_model.EXAMPLES_SIGNATURE](
        examples=tf.constant([_example(i) for i in images]))
    return {k: v.numpy() for k, v in outputs.items()}


def test_the_readme_documents_the_vertex_the_named_the_columnar_and_the_old_signature_bodies():
    bodies = [json.loads(PLACEHOLDER.sub('"x"', body)) for body in readme_bodies()]
    assert len(bodies) == 4
    vertex = [b for b in bodies if set(b) == {"instances"}]
    assert len(vertex) == 2, "two bodies a Vertex endpoint can send (no signature_name, no inputs)"
    assert any("inputs" in b for b in bodies)
    assert any(b.get("signature_name") == exported_model.BYTES_SIGNATURE for b in bodies)


@pytest.mark.parametrize("index", range(4))
def test_each_readme_body_gets_one_class_per_image_as_the_evaluator_scores_it(model, photos, index):
    body_text = readme_bodies()[index]
    order = [f"{m.group(1)}.{m.group(2)}" for m in PLACEHOLDER.finditer(body_text)]
    body = json.loads(PLACEHOLDER.sub(lambda m: json.dumps(_b64(photos[f"{m.group(1)}.{m.group(2)}"])), body_text))
    outputs = tf_serving_rest.predict(model, body)
    reference = _reference(model, [photos[name] for name in order])
    assert list(outputs["error"]) == [b""] * len(order)
    np.testing.assert_array_equal(outputs["class_id"], reference["class_id"])
    np.testing.assert_allclose(outputs["probabilities"], reference["probabilities"], atol=1e-6)
    assert outputs["class_name"][0] == outputs["class_name"][1], "the JPEG and the PNG of one picture agree"


def test_a_vertex_body_reaches_the_image_signature_whose_input_is_image_bytes(model_dir):
    inputs = exported_model.signature_inputs(model_dir)
    assert inputs[exported_model.DEFAULT_SIGNATURE] == [exported_model.IMAGE_INPUT]
    assert inputs[exported_model.BYTES_SIGNATURE] == [exported_model.IMAGE_INPUT]
    assert inputs[exported_model.EXAMPLES_SIGNATURE] == [exported_model.EXAMPLES_INPUT]


def test_the_evaluator_is_pointed_at_the_tf_example_signature(finished_run):
    config, _, _ = finished_run
    (spec,) = pipeline_lib.eval_config(config).model_specs
    assert spec.signature_name == exported_model.EXAMPLES_SIGNATURE


def test_many_instances_with_bad_ones_get_a_verdict_each_and_the_good_ones_their_own_scores(model, photos):
    good = [photos["photo1.jpg"], photos["photo2.png"]] * 3
    bad = {1: b"", 4: b"not an image at all", 6: photos["photo1.jpg"][:200]}
    images = list(good)
    for position, data in sorted(bad.items()):
        images.insert(position, data)
    outputs = tf_serving_rest.predict(model, {"instances": [{"b64": _b64(i)} for i in images]})
    errors = [e.decode() for e in outputs["error"]]
    assert [i for i, e in enumerate(errors) if e] == sorted(bad)
    assert errors[1].startswith("empty input") and errors[4].startswith("not an image")
    assert errors[6].startswith("corrupt or truncated")
    assert all(outputs["class_id"][i] == -1 and outputs["class_name"][i] == b"" for i in bad)
    scored = [i for i in range(len(images)) if i not in bad]
    reference = _reference(model, good)
    np.testing.assert_array_equal(outputs["class_id"][scored], reference["class_id"])
    np.testing.assert_allclose(outputs["probabilities"][scored], reference["probabilities"], atol=1e-6)


def test_a_base64_string_without_the_b64_wrapper_gets_an_error_saying_how_to_wrap_it(model, photos):
    body = {"instances": [_b64(photos["photo1.jpg"]), {"b64": _b64(photos["photo2.png"])}]}
    # Both are values of the one input (a b64 object is a value, not a named object): the request goes through,
    # and the bare string reaches the model as its base64 text.
    outputs = tf_serving_rest.predict(model, body)
    unwrapped, wrapped = [e.decode() for e in outputs["error"]]
    assert 'send it as {"b64": "..."}' in unwrapped and outputs["class_id"][0] == -1
    assert wrapped == "" and outputs["class_id"][1] >= 0


def test_a_named_instance_must_use_the_signature_input_name(model, photos):
    with pytest.raises(tf_serving_rest.RequestError, match="keys must be equal to: image_bytes"):
        tf_serving_rest.predict(model, {"instances": [{"image": {"b64": _b64(photos["photo1.jpg"])}}]})


def test_the_exported_model_records_its_classes_input_size_and_module(finished_run, model_dir, model):
    config, module, _ = finished_run
    facts = exported_model.read_facts(model_dir)
    served_classes = model.signatures[exported_model.DEFAULT_SIGNATURE](
        image_bytes=tf.constant([b""]))["probabilities"].shape[-1]
    assert len(facts.class_names) == served_classes
    assert facts.image_size == module.image_size
    assert facts.module_sha256 == module.sha256 and facts.module_handle == config.hub_handle
