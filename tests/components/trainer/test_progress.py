"""Progress bars only when stderr is a terminal; plain output otherwise (cluster logs, CI)."""
import io
import sys

import pytest

from hubtfx.components.trainer import progress


class _Stderr(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self._terminal = terminal

    def isatty(self):
        return self._terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_is_drawn_only_on_a_terminal(terminal, monkeypatch):
    stderr = _Stderr(terminal)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert progress.bars_wanted() is terminal
    with progress.bar(3, "Scoring", "image") as scoring:
        scoring.update(3)
    assert ("Scoring" in stderr.getvalue()) is terminal
    assert terminal or stderr.getvalue() == ""


def test_a_closed_stderr_is_not_a_terminal(monkeypatch):
    stderr = io.StringIO()
    stderr.close()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert progress.bars_wanted() is False
