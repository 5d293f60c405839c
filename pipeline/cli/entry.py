"""The `hubtfx` console script (and `python -m hubtfx.pipeline.cli`): quiets TensorFlow, then runs the command.

TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it is first imported, and building the parser imports it
(PipelineConfig -> the Trainer's parameters -> TensorFlow). Set after that, as the command line used to, it came
too late: on a CPU machine every command began with TensorFlow's "Unable to register cuDNN/cuFFT/cuBLAS factory",
"Could not find cuda drivers" and oneDNN lines. So this module, and the package __init__ files that run before it
(hubtfx.pipeline, hubtfx.pipeline.cli), import nothing heavy, and `main` sets the level before importing the
commands.
"""
import os
import sys
import warnings
from typing import List, Optional, Sequence


def verbose_requested(argv: Sequence[str]) -> bool:
    """Whether the top-level --verbose (or an abbreviation of it, as argparse accepts) precedes the command."""
    for arg in argv:
        if arg == "--" or not arg.startswith("-"):
            return False
        if len(arg) > 2 and "--verbose".startswith(arg):
            return True
    return False


def quiet_imports(verbose: bool) -> None:
    """TensorFlow's C++ logs only with --verbose or when the user set TF_CPP_MIN_LOG_LEVEL; no import-time
    deprecation notices (e.g. google.api_core's about Python 3.10), which say nothing about the user's run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_imports(verbose_requested(argv))
    from hubtfx.pipeline.cli import commands  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
    return commands.main(argv)


if __name__ == "__main__":
    sys.exit(main())
