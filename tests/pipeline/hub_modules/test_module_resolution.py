"""Handles as users give them: the bundled default, local folders, remote URLs (offline here), unsafe modules."""
import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.hub_modules import module_resolution
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule
from hubtfx.pipeline.hub_modules.vetting import UnsafeModuleError


def test_default_handle_is_the_bundled_efficientnet_with_its_contract(feature_vector_module):
    module = module_resolution.resolve(PipelineConfig())
    assert isinstance(module, ResolvedModule)
    assert module.path == feature_vector_module
    assert module.image_size == (224, 224) and module.value_range == (0.0, 1.0)
    assert module.modality == "image" and module.resize_method == "bicubic"
    assert len(module.sha256) == 64


def test_local_folder_handle_resolves_and_image_size_can_be_overridden(tiny_module):
    module = module_resolution.resolve(PipelineConfig(hub_handle=tiny_module))
    assert module.path == tiny_module and module.image_size == (32, 32)
    overridden = module_resolution.resolve(PipelineConfig(hub_handle=tiny_module, image_size=(48, 48)))
    assert overridden.image_size == (48, 48)


def test_folder_without_a_saved_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a usable module: .* is empty"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(tmp_path)))


def test_unreachable_remote_handle_stops_with_a_pointer_to_the_offline_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    started = time.monotonic()
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=handle))
    assert handle in str(error.value) and "Omit --hub-handle" in str(error.value)
    assert time.monotonic() - started < 120


def test_unsafe_module_is_refused_unless_allowed(tmp_path):
    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, [1, 2]) + tf.cast(tf.strings.length(tf.io.read_file(__file__)), tf.float32)

    module = Reader()
    tf.saved_model.save(module, str(tmp_path), signatures=module.__call__.get_concrete_function())
    config = PipelineConfig(hub_handle=str(tmp_path))
    with pytest.raises(UnsafeModuleError, match="ReadFile"):
        module_resolution.resolve(config)
    allowed = module_resolution.resolve(dataclasses.replace(config, allow_unsafe_module_ops=True))
    assert allowed.image_size == (8, 8)


# ------------------------------------------------------------------ unusable module folders (issue 13, case 05)
README_HANDLE = "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2"


@pytest.fixture
def tfhub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "tfhub_cache"
    cache.mkdir()
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    return cache


def _cached(cache, handle=README_HANDLE):
    """Where tensorflow_hub 0.16.1 caches a compressed download: <cache>/sha1(handle) (compressed_module_resolver)."""
    return cache / hashlib.sha1(handle.encode("utf8")).hexdigest()


def test_a_complete_cached_module_is_used_offline(tfhub_cache, tiny_module):
    """Proves the cache folder is named as tensorflow_hub names it: offline, only the cached copy can resolve."""
    shutil.copytree(tiny_module, _cached(tfhub_cache))
    module = module_resolution.resolve(PipelineConfig(hub_handle=README_HANDLE))
    assert module.path == str(_cached(tfhub_cache)) and module.image_size == (32, 32)


def _truncate_variables(folder):
    (shard,) = (folder / "variables").glob("variables.data-*")
    shard.write_bytes(shard.read_bytes()[:100])


@pytest.mark.parametrize("damage, problem", [
    # Case 05 as the field report has it: a temp cleaner deleted the files and left the folders.
    (lambda m: [shutil.rmtree(m), (m / "variables").mkdir(parents=True), (m / "assets").mkdir()],
     "has no saved_model.pb"),
    (lambda m: (m / "saved_model.pb").write_bytes((m / "saved_model.pb").read_bytes()[:5000]), "saved_model.pb"),
    (lambda m: shutil.rmtree(m / "variables"), "variables/ folder is missing"),
    (_truncate_variables, "truncated or corrupt variables"),
    (lambda m: (m / "hubtfx_contract.json").write_text("{not json"), "malformed hubtfx_contract.json"),
])
def test_an_incomplete_cached_module_names_handle_folder_and_fix(tfhub_cache, tiny_module, damage, problem):
    folder = _cached(tfhub_cache)
    shutil.copytree(tiny_module, folder)
    damage(folder)
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=README_HANDLE))
    message = str(error.value)
    assert README_HANDLE in message and str(folder) in message and problem in message
    assert "Delete it" in message and "TFHUB_CACHE_DIR" in message


def test_a_file_in_place_of_the_cache_folder_is_named(tfhub_cache):
    _cached(tfhub_cache).write_text("not a folder")
    with pytest.raises(module_resolution.ModuleUnavailableError, match="is a file.*Delete it"):
        module_resolution.resolve(PipelineConfig(hub_handle=README_HANDLE))


def test_an_empty_cache_folder_is_downloaded_again_so_offline_it_cannot_be_fetched(tfhub_cache):
    _cached(tfhub_cache).mkdir()  # tensorflow_hub treats an empty folder as not downloaded.
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=README_HANDLE))
    assert "Cannot fetch" in str(error.value) and str(_cached(tfhub_cache)) in str(error.value)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_left_by_a_killed_download_is_named_at_once(tfhub_cache):
    folder = _cached(tfhub_cache)
    task = "0123456789abcdef0123456789abcdef"
    # What resolver.atomic_download leaves when killed mid-download: the lock and its partial download folder.
    (tfhub_cache / (folder.name + ".lock")).write_text(f"{socket.gethostname()}.{_dead_pid()}.{task}")
    (tfhub_cache / f"{folder.name}.{task}.tmp" / "variables").mkdir(parents=True)
    started = time.monotonic()
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=README_HANDLE))
    assert time.monotonic() - started < 60  # tensorflow_hub alone would wait 10 minutes for the lock.
    message = str(error.value)
    assert README_HANDLE in message and f"{folder}.lock" in message and f"{folder}.{task}.tmp" in message
    assert "Delete them" in message


def test_a_lock_of_a_running_download_is_left_to_tensorflow_hub(tfhub_cache):
    folder = str(_cached(tfhub_cache))
    with open(folder + ".lock", "w") as f:
        f.write(f"{socket.gethostname()}.{os.getpid()}.abc")  # This process: alive.
    assert module_resolution._stale_lock_problem(README_HANDLE, folder) is None
    with open(folder + ".lock", "w") as f:
        f.write(f"another-host.example.{_dead_pid()}.abc")  # Another machine sharing the cache: cannot tell.
    assert module_resolution._stale_lock_problem(README_HANDLE, folder) is None


def test_only_compressed_handles_have_a_cache_folder(tfhub_cache, monkeypatch):
    assert module_resolution.tfhub_cache_folder("gs://bucket/module.tar.gz") == str(
        _cached(tfhub_cache, "gs://bucket/module.tar.gz"))
    assert module_resolution.tfhub_cache_folder("gs://bucket/module") is None  # Read in place.
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    assert module_resolution.tfhub_cache_folder(README_HANDLE) is None


@pytest.mark.parametrize("make, handle, hint", [
    (lambda root: None, "tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
     "--hub-handle https://tfhub.dev/google/"),
    (lambda root: None, "{root}/missing", "does not exist"),
    (lambda root: (root / "m").mkdir() or (root / "m" / "saved_model.pb").write_bytes(b"x"),
     "{root}/m/saved_model.pb", "Pass the folder that contains it: --hub-handle {root}/m"),
    (lambda root: (root / "m.tar.gz").write_bytes(b"x"), "{root}/m.tar.gz", "Unpack the archive first"),
    (lambda root: shutil.copytree(root.parent / "tiny", root / "export" / "1"), "{root}/export",
     "A SavedModel is in a sub-folder: --hub-handle {root}/export/1"),
])
def test_a_local_handle_that_is_not_a_module_folder_says_what_to_pass(tmp_path, tiny_module, monkeypatch, make,
                                                                      handle, hint):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "user"
    root.mkdir()
    shutil.copytree(tiny_module, tmp_path / "tiny")
    make(root)
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=handle.format(root=root)))
    assert hint.format(root=root) in str(error.value)


def test_a_malformed_contract_is_not_silently_replaced_by_image_size(tiny_module, tmp_path):
    module = tmp_path / "module"
    shutil.copytree(tiny_module, module)
    (module / "hubtfx_contract.json").write_text('{"image_size": [32, 32], "value_range": [1, -1]}')
    with pytest.raises(module_resolution.ModuleUnavailableError, match="malformed hubtfx_contract.json"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(module), image_size=(32, 32)))


def _span_data(root):
    from hubtfx.pipeline.datasets import sample_data
    sample_data.generate_dataset(str(root), images_per_class=4, spans=1)
    return str(root)


def test_case_05_run_exits_2_before_any_component_without_a_traceback(tmp_path, tfhub_cache, sample_root):
    """Case 05 exactly as the field report runs it: `hubtfx run` in a fresh process on a cleaned cache folder."""
    folder = _cached(tfhub_cache)
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "hubtfx.pipeline.cli", "run", "--hub-handle", README_HANDLE, "--data-root", sample_root,
         "--output-dir", str(out)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TFHUB_CACHE_DIR": str(tfhub_cache)})
    assert result.returncode == 2, result.stderr[-3000:]
    assert README_HANDLE in result.stderr and str(folder) in result.stderr and "Delete it" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "last_error.log").exists()
    assert not (out / "pipeline_root").exists()


def test_retrain_and_compile_stop_the_same_way(tmp_path, tfhub_cache, capsys):
    from hubtfx.pipeline.cli import commands
    folder = _cached(tfhub_cache)
    (folder / "variables").mkdir(parents=True)
    spans = _span_data(tmp_path / "spans")
    code = commands.main(["retrain", "--hub-handle", README_HANDLE, "--data-root", spans, "--output-dir",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == commands.EXIT_USAGE and str(folder) in err and "Delete it" in err and "Traceback" not in err
    # compile reads a gs:// archive through the same cache (tensorflow_hub's GcsCompressedFileResolver).
    archive = "gs://example-bucket/modules/backbone.tar.gz"
    (_cached(tfhub_cache, archive) / "assets").mkdir(parents=True)
    code = commands.main(["compile", "--target", "kubeflow", "--output", str(tmp_path / "spec.yaml"), "--hub-handle",
                     archive, "--image", "registry.example.com/hubtfx:1", "--data-root", "gs://example-bucket/d",
                     "--output-dir", "gs://example-bucket/out"])
    err = capsys.readouterr().err
    assert code == commands.EXIT_USAGE and archive in err and str(_cached(tfhub_cache, archive)) in err
    assert not (tmp_path / "spec.yaml").exists()
