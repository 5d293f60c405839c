"""`ResolvedModule`: the backbone a run uses, as `module_resolution.resolve` (or the Kubeflow runner) determined it.

Kept apart from the config and from resolution so that any code may import it without an import cycle: it imports
only `components/common`, which imports nothing of hubtfx.
"""
import dataclasses
from typing import Any, Optional, Tuple

from hubtfx.components.common.contract import DEFAULT_MODALITY, TEXT_MODALITY


@dataclasses.dataclass(frozen=True)
class ResolvedModule:
    """A vetted module with a known contract: what the pipeline's steps read and how their inputs are prepared.

    path: the folder (or gs:// / in-image path) the pipeline's steps read the module from.
    sha256: the content hash of the module (its identity, recorded in ML Metadata and the exported model).
    image_size: the effective (height, width) of the module's input: the user's `image_size` if set, else the
      module contract's.
    value_range, resize_method: from the module contract (how pixels are scaled and resized).
    modality: the registry name of the input modality the contract names (e.g. "image").
    seq_length: texts: wordpieces per example (the contract's); None for images.
    preprocessor, preprocessor_sha256: texts: the folder of the TF Hub preprocessing model the encoder was trained
      with (as the pipeline's steps read it), and its content hash; "" for images.
    """
    path: str
    sha256: str
    image_size: Optional[Tuple[int, int]] = None
    value_range: Tuple[float, float] = (0.0, 1.0)
    resize_method: str = "bilinear"
    modality: str = DEFAULT_MODALITY
    seq_length: Optional[int] = None
    preprocessor: str = ""
    preprocessor_sha256: str = ""

    def __post_init__(self):
        # Normalised to tuples, so equal modules compare equal and the value stays hashable.
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "value_range", tuple(self.value_range))  # as the contract has them: they reach
        # the Transform's custom_config verbatim
        if not (self.path and self.sha256):
            raise ValueError(f"A ResolvedModule needs a path and a sha256, got {self}.")
        if self.modality == DEFAULT_MODALITY and len(self.image_size or ()) != 2:
            raise ValueError(f"An image ResolvedModule needs an (height, width) image_size, got {self}.")
        if self.modality == TEXT_MODALITY and not (self.seq_length and self.preprocessor and self.preprocessor_sha256):
            raise ValueError(f"A text ResolvedModule needs seq_length, a preprocessor and its sha256, got {self}.")


    @property
    def input_description(self) -> str:
        """What the module reads, for people: "224x224 images" or "texts, up to 128 wordpieces"."""
        if self.modality == TEXT_MODALITY:
            return f"texts, up to {self.seq_length} wordpieces"
        if self.image_size:
            return f"{self.image_size[0]}x{self.image_size[1]} images"
        return f"{self.modality} inputs"


def require(module: Any, where: str) -> "ResolvedModule":
    """Returns `module` if it is a ResolvedModule; otherwise a TypeError that names `where` and the fix, at once
    (not deep inside a component)."""
    if isinstance(module, ResolvedModule):
        return module
    got = "nothing" if module is None else f"a {type(module).__name__}"
    raise TypeError(f"{where} needs a ResolvedModule, got {got}: resolve the backbone first with "
                    "hubtfx.pipeline.hub_modules.module_resolution.resolve(config) and pass its result.")
