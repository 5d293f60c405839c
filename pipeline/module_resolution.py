"""Turns the user's `hub_handle` into a vetted local module with a known contract and content hash.

This runs before the pipeline is built, so an unreachable, unsafe or incompatible module stops the run before any
Beam job starts.
"""
import dataclasses
import logging
import os

from pipeline.config import ConfigError, PipelineConfig
from pipeline.hub_modules import builder, contract as module_contract, vetting

_REMOTE_PREFIXES = ("http://", "https://", "gs://")


class ModuleUnavailableError(ConfigError):
    """The module cannot be found or fetched."""


def is_remote(handle: str) -> bool:
    return handle.startswith(_REMOTE_PREFIXES)


def fetch_remote(handle: str) -> str:
    """Downloads (or finds in TFHUB_CACHE_DIR) a tfhub.dev / Kaggle / gs:// module; returns its local folder."""
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    try:
        return hub.resolve(handle)
    except Exception as e:  # pylint: disable=broad-except
        raise ModuleUnavailableError(
            f"Cannot fetch the Hub module {handle!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
            " This machine may be offline. Omit --hub-handle to use the bundled EfficientNet-Lite0 module, pass a "
            "local SavedModel folder, or set TFHUB_CACHE_DIR to a cache that already holds this module.") from None


def local_module_path(config: PipelineConfig) -> str:
    handle = config.hub_handle
    if not handle:
        return builder.build_module("feature_vector")
    if is_remote(handle):
        return fetch_remote(handle)
    path = os.path.abspath(os.path.expanduser(handle))
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ModuleUnavailableError(
            f"--hub-handle {handle!r} is not a SavedModel folder (no saved_model.pb in {path}). Pass the folder "
            "that contains saved_model.pb, a tfhub.dev/Kaggle URL, or omit it for the bundled module.")
    return path


def resolve(config: PipelineConfig) -> PipelineConfig:
    """Returns `config` with module_path, module_sha256, image_size, value_range and resize_method filled in."""
    path = local_module_path(config)
    report = vetting.vet_module(path, allow_unsafe_ops=config.allow_unsafe_module_ops)
    logging.info("Module %s vetted: %s", path, report)
    contract = _contract_or_override(path, config)
    return dataclasses.replace(
        config,
        module_path=path,
        module_sha256=builder.module_sha256(path),
        image_size=tuple(config.image_size or contract.image_size),
        value_range=tuple(contract.value_range),
        resize_method=contract.resize_method,
    )


def _contract_or_override(path: str, config: PipelineConfig) -> module_contract.ModuleContract:
    try:
        contract = module_contract.read_contract(path)
    except module_contract.ContractError as e:
        if not config.image_size:
            raise ConfigError(str(e)) from None
        return module_contract.ModuleContract(image_size=tuple(config.image_size))
    if config.image_size and tuple(config.image_size) != tuple(contract.image_size):
        logging.warning("image_size %s overrides the module's declared input size %s.", config.image_size,
                        contract.image_size)
    return contract
