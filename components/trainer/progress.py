"""Progress bars on a terminal, plain log lines everywhere else.

A bar is only drawn when stderr is a terminal: cluster logs (Kubeflow, Vertex AI) and CI capture stderr to a file,
where a bar becomes a stream of carriage-return updates, so there the log lines are all there is. Tests force
either mode by replacing `bars_wanted`. Here, beside the Trainer's epoch logger, because the Trainer's user code
must not import the orchestration layer (hubtfx.pipeline), while `hubtfx predict` may import this.
"""
import sys

from tqdm import tqdm


def bars_wanted() -> bool:
    """Whether stderr is a terminal (a closed or replaced stream counts as not one)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total: int, description: str, unit: str) -> tqdm:
    """A bar on stderr that disappears when closed, or, without a terminal, a tqdm that draws nothing."""
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not bars_wanted())
