"""Fixtures of the ExampleGen tests."""
import pytest

from hubtfx.components.example_gen.split import EVAL, TRAIN


def _names_hashing_to(rule, class_name, n_train, n_eval, prefix="img"):
    """`n_train` + `n_eval` paths of `class_name` whose hashed split is train / eval (like the field case)."""
    chosen, want, index = [], {TRAIN: n_train, EVAL: n_eval}, 0
    while want[TRAIN] or want[EVAL]:
        path = f"{class_name}/{prefix}_{index:03d}.png"
        if want[rule.hashed_split(path)]:
            want[rule.hashed_split(path)] -= 1
            chosen.append(path)
        index += 1
    return chosen


@pytest.fixture
def names_hashing_to():
    """_names_hashing_to(rule, class_name, n_train, n_eval, prefix="img")."""
    return _names_hashing_to
