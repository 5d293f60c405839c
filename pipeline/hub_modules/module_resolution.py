"""Turns the user's `hub_handle` into a vetted local module with a known contract and content hash.

This runs before the pipeline is built, so an unreachable, incomplete, unsafe or incompatible module stops the run
(exit code 2) before any Beam job starts, with a message that names the handle, the folder and the fix.
"""
import hashlib
import logging
import os
import socket
from typing import Optional

from hubtfx.components.common import contract as module_contract
from hubtfx.components.modality import registry as modalities
from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.hub_modules import builder, integrity, vetting
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule

_REMOTE_PREFIXES = ("http://", "https://", "gs://")
# Handles people copy without the scheme; tensorflow_hub would read them as local paths.
_SCHEMELESS_HOSTS = ("tfhub.dev/", "www.kaggle.com/", "kaggle.com/")
TFHUB_CACHE_ENV = "TFHUB_CACHE_DIR"


class ModuleUnavailableError(ConfigError):
    """The module cannot be found, fetched or read completely."""


def is_remote(handle: str) -> bool:
    return handle.startswith(_REMOTE_PREFIXES)


def tfhub_cache_folder(handle: str) -> Optional[str]:
    """The folder tensorflow_hub caches `handle` in, or None if it reads the handle without a cache.

    Mirrors tensorflow_hub 0.16.1: `resolve` picks the last registered resolver that supports the handle
    (registry.py, config.py); the two compressed resolvers cache in `<cache dir>/sha1(handle)`
    (compressed_module_resolver._module_dir), the cache dir being $TFHUB_CACHE_DIR, --tfhub_cache_dir or
    <temp dir>/tfhub_modules (resolver.tfhub_cache_dir(use_temp=True)).
    """
    from tensorflow_hub import compressed_module_resolver, resolver  # pylint: disable=import-outside-toplevel
    cached = (compressed_module_resolver.HttpCompressedFileResolver().is_supported(handle)
              or compressed_module_resolver.GcsCompressedFileResolver().is_supported(handle))
    if not cached:
        return None
    return os.path.join(resolver.tfhub_cache_dir(use_temp=True), hashlib.sha1(handle.encode("utf8")).hexdigest())


def _delete_fix(handle: str, folder: str) -> str:
    return (f"Delete it (rm -rf '{folder}') or point {TFHUB_CACHE_ENV} at another folder, and run again: "
            f"tensorflow_hub then downloads {handle!r} afresh (this needs the network).")


def _stale_lock_problem(handle: str, folder: str) -> Optional[str]:
    """The message for a download lock whose owner is gone, or None (no lock, or a download that may be live).

    tensorflow_hub's resolver.atomic_download writes `<folder>.lock` holding "<host>.<pid>.<task uid>" and
    downloads into `<folder>.<task uid>.tmp`; a killed download leaves both behind, and every later resolve
    waits for the lock (10 minutes without progress, then steals it). A lock from a process of this host that
    no longer runs is certainly stale; a lock from another host may be a live download, which tensorflow_hub
    waits for.
    """
    lock = folder + ".lock"
    try:
        with open(lock, encoding="utf-8") as f:
            host, pid, task = f.read().strip().rsplit(".", 2)
        pid = int(pid)
    except (OSError, ValueError):  # No lock, or not one tensorflow_hub wrote.
        return None
    if host != socket.gethostname() or _process_exists(pid):
        logging.info("%s is locked by %s (process %d): another download of %s may be running; tensorflow_hub "
                     "waits for it.", lock, host, pid, handle)
        return None
    partial = f"{folder}.{task}.tmp"
    left = [lock] + ([partial] if os.path.exists(partial) else [])
    return (f"The Hub module {handle!r} cannot be fetched: a download into {folder} was interrupted (process {pid} "
            f"on this machine no longer runs) and left {' and '.join(left)} behind, so tensorflow_hub would wait "
            f"10 minutes for it. Delete {'them' if len(left) > 1 else 'it'} "
            f"(rm -rf {' '.join(repr(p) for p in left)}) and run again.")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Exists, owned by another user.
        return True
    return True


def fetch_remote(handle: str) -> str:
    """Downloads (or finds in TFHUB_CACHE_DIR) a tfhub.dev / Kaggle / gs:// module; returns its local folder.

    Raises:
      ModuleUnavailableError: the cached copy is incomplete (stale cache folder, interrupted download), the
        module cannot be fetched (offline, unknown handle), or what was fetched is not a complete SavedModel.
    """
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    folder = tfhub_cache_folder(handle)
    if folder is not None:
        # A folder that exists and is not empty is returned by tensorflow_hub as a finished download, whatever
        # it holds (resolver.atomic_download); an empty one is downloaded again.
        problem = integrity.find_problem(folder) if os.path.lexists(folder) else None
        if problem and problem != integrity.EMPTY:
            _raise_incomplete(handle, folder, problem, _delete_fix(handle, folder), cached=True)
        if not os.path.lexists(folder) or problem == integrity.EMPTY:
            stale = _stale_lock_problem(handle, folder)
            if stale:
                raise ModuleUnavailableError(stale)
    try:
        path = hub.resolve(handle)
    except Exception as e:  # pylint: disable=broad-except
        where = f" into {folder}" if folder else ""
        raise ModuleUnavailableError(
            f"Cannot fetch the Hub module {handle!r}{where} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). This machine may be offline. Omit --hub-handle to use "
            "the bundled EfficientNet-Lite0 module, pass a local SavedModel folder, or set TFHUB_CACHE_DIR to a "
            "cache that already holds this module.") from None
    cached = folder is not None and os.path.abspath(path) == os.path.abspath(folder)
    problem = integrity.find_problem(path)  # A fresh download can be broken too (a bad archive).
    if problem:
        _raise_incomplete(handle, path, problem, _delete_fix(handle, path) if cached else
                          "Fix the module at its source, or pass another handle.", cached=cached)
    return path


def _raise_incomplete(handle: str, folder: str, problem: str, fix: str, cached: bool) -> None:
    what = "tensorflow_hub's cached copy of it is incomplete" if cached else "its folder is not usable"
    raise ModuleUnavailableError(f"The Hub module {handle!r} cannot be used: {what}: {folder} {problem}. {fix}")


def _local_fix(handle: str, path: str) -> str:
    """What to do about a local handle that is not a usable module folder, from what is there instead."""
    if not os.path.lexists(path) and handle.startswith(_SCHEMELESS_HOSTS):
        return f"For a tfhub.dev or Kaggle module pass the full URL: --hub-handle https://{handle}"
    if os.path.isfile(path) and os.path.basename(path) == integrity.SAVED_MODEL_FILENAME:
        return f"Pass the folder that contains it: --hub-handle {os.path.dirname(path)}"
    if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz", ".tar")):
        return (f"Unpack the archive first (mkdir module && tar -xf '{path}' -C module) and pass that folder, or "
                "pass its tfhub.dev/Kaggle URL.")
    if os.path.isdir(path):
        # Top-down, so the first hit is the shallowest (e.g. an export_dir/<version>/ layout).
        nested = next((root for root, _, files in os.walk(path) if integrity.SAVED_MODEL_FILENAME in files), None)
        if nested and nested != path:
            return f"A SavedModel is in a sub-folder: --hub-handle {nested}"
    return ("Pass a folder that holds a complete SavedModel (saved_model.pb and variables/; copy or export it "
            "again if it was cut short), a tfhub.dev/Kaggle URL, or omit --hub-handle for the bundled module.")


def local_module_path(config: PipelineConfig) -> str:
    """The module's folder on this machine: the bundled module (rebuilt if its cached copy is damaged), a
    fetched remote module, or the user's folder; each is checked to be complete before it is used."""
    handle = config.hub_handle
    if not handle:
        return builder.build_module(builder.bundled(config.modality).kind)
    if is_remote(handle):
        return fetch_remote(handle)
    path = os.path.abspath(os.path.expanduser(handle))
    problem = integrity.find_problem(path)
    if problem:
        raise ModuleUnavailableError(f"--hub-handle {handle!r} is not a usable module: {path} {problem}. "
                                     f"{_local_fix(handle, path)}")
    return path


def resolve(config: PipelineConfig) -> ResolvedModule:
    """The module `config` names (its `hub_handle`, or the bundled module), fetched or built, vetted, with its
    contract read: a ResolvedModule whose image_size is the config's `image_size` override or the contract's.

    Raises ModuleUnavailableError (a ConfigError) for a module that cannot be found or read, and a ConfigError for
    an unsafe module, an unreadable contract without an image_size override, or a modality hubtfx does not know.
    """
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"module_resolution.resolve needs a PipelineConfig, got a {type(config).__name__}.")
    path = local_module_path(config)
    vetting.vet_module(path, allow_unsafe_ops=config.allow_unsafe_module_ops)  # logs its outcome itself
    module = from_contract(path, builder.module_sha256(path), config)
    if module.preprocessor:
        vetting.vet_module(module.preprocessor, allow_unsafe_ops=config.allow_unsafe_module_ops)
    return module


def preprocessor_path(encoder_path: str, contract: module_contract.ModuleContract) -> str:
    """The folder of a text encoder's preprocessing model: the contract's `preprocessor`, absolute or relative to
    the encoder's parent folder. Raises ConfigError when the contract names none or the folder is not a module."""
    if not contract.preprocessor:
        raise ConfigError(f"The text module {encoder_path} names no preprocessing model (`preprocessor` in its "
                          f"{module_contract.CONTRACT_FILENAME}): hubtfx tokenizes texts only with the preprocessing "
                          "model the encoder was trained with. Add its folder to the contract.")
    path = _beside(encoder_path, contract.preprocessor)
    problem = integrity.find_problem(path)
    if problem:
        raise ModuleUnavailableError(f"The preprocessing model of {encoder_path} is not usable: {path} {problem}. "
                                     "Rebuild the pair (hubtfx build-module --kind minilm_l6_encoder --force) or fix "
                                     "the contract's `preprocessor`.")
    return path


def _beside(encoder_path: str, preprocessor: str) -> str:
    """The contract's `preprocessor` folder as seen from an encoder at `encoder_path` (absolute, or relative to the
    encoder's parent folder)."""
    return os.path.join(os.path.dirname(os.path.normpath(encoder_path)), preprocessor)


def from_contract(path: str, sha256: str, config: PipelineConfig, read_from: str = "") -> ResolvedModule:
    """The ResolvedModule for the module in `read_from` (default: `path`), which the pipeline's steps read at
    `path`, with the config's image_size override applied; a ConfigError for an unknown modality."""
    contract = _contract_or_override(read_from or path, config)
    try:
        modality = modalities.modality_for(contract).name
    except modalities.UnknownModalityError as e:
        raise ConfigError(f"Module {read_from or path}: {e}") from None
    if config.modality and config.modality != modality:
        raise ConfigError(f"--modality {config.modality} but the module {config.hub_handle or read_from or path} takes "
                          f"{modality} inputs (its contract's `modality`): pick a {config.modality} module with "
                          f"--hub-handle, or drop --modality.")
    if modality == module_contract.TEXT_MODALITY:
        if config.image_size:
            raise ConfigError(f"--image-size applies to image modules; {config.hub_handle or read_from or path} is a "
                              "text module (its sequence length is its contract's seq_length). Drop --image-size.")
        # Checked where it is read now; recorded where the pipeline's steps will read it (`path`'s sibling).
        local_preprocessor = preprocessor_path(read_from or path, contract)
        return ResolvedModule(path=path, sha256=sha256, modality=modality, seq_length=contract.seq_length,
                              preprocessor=_beside(path, contract.preprocessor),
                              preprocessor_sha256=builder.module_sha256(local_preprocessor))
    return ResolvedModule(
        path=path,
        sha256=sha256,
        image_size=tuple(config.image_size or contract.image_size),
        value_range=tuple(contract.value_range),
        resize_method=contract.resize_method,
        modality=modality,
    )


def _contract_or_override(path: str, config: PipelineConfig) -> module_contract.ModuleContract:
    try:
        contract = module_contract.read_contract(path)
    except module_contract.ContractError as e:
        if config.modality == module_contract.TEXT_MODALITY:
            raise ConfigError(
                f"{e} A text module needs a {module_contract.CONTRACT_FILENAME} beside it naming its modality "
                '("text"), seq_length and the folder of the TF Hub preprocessing model it was trained with '
                '("preprocessor", a sibling folder): hubtfx cannot infer these from the SavedModel. See the README, '
                '"Texts".') from None
        if not config.image_size:
            raise ConfigError(str(e)) from None
        return module_contract.ModuleContract(image_size=tuple(config.image_size))
    if config.image_size and contract.image_size and tuple(config.image_size) != tuple(contract.image_size):
        logging.warning("image_size %s overrides the module's declared input size %s.", config.image_size,
                        contract.image_size)
    return contract
