"""Deterministic generator of a small text-classification dataset (short notes on three topics).

It stands in for real texts in tests and demos, the way sample_data.py's shapes stand in for photos: every note is
two or three sentences built from templates, topic words and words shared by all topics, so that no single word
decides the class but a sentence encoder's sense of the topic does. Real text benchmarks use real data
(benchmarks/datasets.py: fortunes).

Layout written (the class-folder layout ImageFolderExampleGen reads with the text modality, as aclImdb's)::

    <root>/<class_name>/<class_name>_0000.txt     UTF-8, one note per file

Every note comes from its own random generator seeded by (seed, class, index): the same arguments always give the
same files, whichever other notes are generated.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np

CLASS_NAMES = ("cooking", "sports", "weather")

_TOPIC_WORDS: Dict[str, Sequence[str]] = {
    "cooking": ("the soup", "a loaf of bread", "the garlic", "the oven", "a pinch of salt", "the onions", "the sauce",
                "fresh basil", "the pasta", "a frying pan", "the dough", "the recipe", "butter", "the roast"),
    "sports": ("the striker", "the goalkeeper", "the referee", "the final whistle", "the match", "the league",
               "the coach", "a penalty", "the relay team", "the marathon", "the second half", "the stadium",
               "the tennis final", "the champions"),
    "weather": ("the forecast", "heavy rain", "a cold front", "the wind", "thunderstorms", "the fog", "sunshine",
                "the temperature", "snow showers", "the humidity", "a heat wave", "the clouds", "hail",
                "the morning frost"),
}
_VERBS = ("surprised everyone", "changed quickly", "was the talk of the day", "took longer than planned",
          "made the evening", "needed more attention", "turned out fine", "was better than last week")
_OPENERS = ("Yesterday", "This morning", "On Sunday", "Later tonight", "Last year", "Right now", "Again")
_FILLERS = ("Everyone agreed.", "Nobody expected that.", "We will see tomorrow.", "It was quite something.",
            "My neighbour said the same.", "That is all for now.")


def note(class_name: str, rng: np.random.Generator) -> str:
    """One note of the class: two topic sentences and, for half of them, a topic-free one."""
    words = _TOPIC_WORDS[class_name]
    sentences = [f"{rng.choice(_OPENERS)} {rng.choice(words)} {rng.choice(_VERBS)}.",
                 f"Then {rng.choice(words)} and {rng.choice(words)} {rng.choice(_VERBS)}."]
    if rng.random() < 0.5:
        sentences.insert(int(rng.integers(0, 3)), str(rng.choice(_FILLERS)))
    return " ".join(sentences)


def generate_texts(root: str, texts_per_class: int = 20, seed: int = 0,
                   class_names: Sequence[str] = CLASS_NAMES) -> Dict[str, List[str]]:
    """Writes `texts_per_class` notes per class under `root` (see the module docstring); returns the paths written
    per class. Raises ValueError for an unknown class name or texts_per_class < 1."""
    unknown = sorted(set(class_names) - set(_TOPIC_WORDS))
    if unknown or texts_per_class < 1:
        raise ValueError(f"class names must be among {CLASS_NAMES} (got unknown {unknown}) and texts_per_class >= 1 "
                         f"(got {texts_per_class}).")
    written: Dict[str, List[str]] = {}
    for class_index, class_name in enumerate(CLASS_NAMES):
        if class_name not in class_names:
            continue
        folder = os.path.join(root, class_name)
        os.makedirs(folder, exist_ok=True)
        for index in range(texts_per_class):
            rng = np.random.default_rng([seed, class_index, index])
            path = os.path.join(folder, f"{class_name}_{index:04d}.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(note(class_name, rng) + "\n")
            written.setdefault(class_name, []).append(path)
    return written
