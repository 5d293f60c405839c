"""vet_module: refuses modules whose graph can touch files, run Python or use the network."""
import pytest
import tensorflow as tf

from hubtfx.pipeline.hub_modules.vetting import UnsafeModuleError, vet_module


def test_pretrained_and_tiny_modules_pass(classification_module, tiny_module):
    for module in (classification_module, tiny_module):
        report = vet_module(module)
        assert report.is_safe and report.findings == ()
        assert "__call__" in report.entry_points
        # call(training=False/True), serve, signature wrapper, and the checkpoint save/restore functions.
        assert report.functions_scanned >= 6


def _save_hub_style_module(path, body):
    """A minimal hub-format module whose __call__ runs ``body(images)``."""

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(1.0)
            self.variables_list = [self.scale]

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, images):
            return body(images) * self.scale

    module = Module()
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return str(path)


def _reads_a_file(images):
    secret = tf.io.read_file("/etc/hostname")
    return tf.reduce_mean(images, axis=[1, 2]) + tf.cast(tf.strings.length(secret), tf.float32)


def _calls_python(images):
    return tf.py_function(lambda x: x.numpy() * 2, [tf.reduce_mean(images, axis=[1, 2])], tf.float32)


def test_module_reading_a_file_is_refused_with_details(tmp_path):
    module = _save_hub_style_module(tmp_path / "reader", _reads_a_file)
    with pytest.raises(UnsafeModuleError) as error:
        vet_module(module)
    message = str(error.value)
    assert "ReadFile" in message
    assert "__call__" in message
    assert module in message
    assert "--allow-unsafe-module-ops" in message


def test_unsafe_module_is_accepted_when_allowed(tmp_path):
    module = _save_hub_style_module(tmp_path / "reader", _reads_a_file)
    report = vet_module(module, allow_unsafe_ops=True)
    assert not report.is_safe
    assert report.unsafe_ops == ("ReadFile",)
    assert any("__call__" in f.entry_points for f in report.findings)


def test_python_callback_is_refused(tmp_path):
    module = _save_hub_style_module(tmp_path / "callback", _calls_python)
    with pytest.raises(UnsafeModuleError, match="EagerPyFunc"):
        vet_module(module)


def test_checkpoint_ops_outside_the_saver_are_refused(tmp_path):
    def saves_a_checkpoint(images):
        tf.raw_ops.SaveV2(prefix=str(tmp_path / "exfiltrated"), tensor_names=["x"], shape_and_slices=[""],
                          tensors=[tf.reduce_sum(images)])
        return tf.reduce_mean(images, axis=[1, 2])

    module = _save_hub_style_module(tmp_path / "saver", saves_a_checkpoint)
    with pytest.raises(UnsafeModuleError, match="SaveV2"):
        vet_module(module)


def test_vetting_does_not_run_the_module(tmp_path):
    marker = tmp_path / "written"

    def writes_a_file(images):
        tf.io.write_file(str(marker), "x")
        return tf.reduce_mean(images, axis=[1, 2])

    module = _save_hub_style_module(tmp_path / "writer", writes_a_file)
    report = vet_module(module, allow_unsafe_ops=True)
    assert report.unsafe_ops == ("WriteFile",)
    assert not marker.exists()
