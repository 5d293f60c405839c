"""Class-name identity: which folder names (and label-map entries) are the same class.

A class name is the folder name in Unicode NFC with surrounding white space removed (`class_name_of`).
Folders whose names are equal after that are **one class** (their images are merged): canonically
equivalent strings (NFC vs NFD, as macOS and many zip tools write them) are the same text by the Unicode
standard (UAX #15) and render identically, and leading/trailing spaces are invisible in every listing.

Names that differ only under *compatibility* mapping (NFKC: full-width letters, ligatures, no-break spaces,
superscripts) look alike but are not the same text; which one was meant cannot be known, so they are refused
with their code points. Names that differ only in letter case are **different classes** (e.g. 'a' and 'A' of a
handwriting dataset): they print differently, and a case-insensitive file system cannot hold both folders.
"""
from __future__ import annotations

import unicodedata
from typing import Dict, Iterable, List, Tuple


class ClassNameError(ValueError):
    """Class names that cannot be told apart by a reader; the message names their code points."""


def class_name_of(folder_name: str) -> str:
    """The class a folder (or label-map entry) stands for: NFC, surrounding white space removed."""
    return unicodedata.normalize("NFC", folder_name).strip()


def code_points(name: str) -> str:
    """'café' -> "'café' (U+0063 U+0061 U+0066 U+00E9)": the form used in every message about a name."""
    return f"{name!r} ({' '.join(f'U+{ord(char):04X}' for char in name)})"


def convmv_hint(folder: str) -> str:
    return f"`convmv -f utf8 -t utf8 --nfc -r --notest {folder}`"


def check_look_alikes(names: Iterable[str], where: str,
                      fix: str = "Rename the folders so each class has one spelling (e.g. plain ASCII/half-width).",
                      ) -> None:
    """Refuses class names that differ but are equal under NFKC (compatibility) normalisation.

    Args:
      names: class names, already passed through `class_name_of`.
      where: what holds them (a folder, a label map, a table), for the message.
      fix: the message's last sentence, what to change (a table's labels are not folders).

    Raises:
      ClassNameError: naming each look-alike group with its code points.
    """
    groups: Dict[str, List[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(unicodedata.normalize("NFKC", name), []).append(name)
    clashes = [group for group in groups.values() if len(group) > 1]
    if clashes:
        described = "; ".join(" and ".join(code_points(name) for name in group) for group in clashes)
        raise ClassNameError(
            f"{where} holds class names that look alike but are different characters (they are equal only "
            f"under Unicode compatibility mapping, NFKC: full-width letters, ligatures, no-break spaces, ...): "
            f"{described}. {fix}"
        )


def group_folders(folder_names: Iterable[str]) -> Dict[str, List[str]]:
    """Class name -> the sorted folder names that stand for it (more than one when spellings differ).

    Raises:
      ClassNameError: a folder name that is blank once white space is removed, or look-alike class names.
    """
    classes: Dict[str, List[str]] = {}
    for folder in sorted(folder_names):
        name = class_name_of(folder)
        if not name:
            raise ClassNameError(f"class folder {code_points(folder)} has a blank name: rename it after its class.")
        classes.setdefault(name, []).append(folder)
    check_look_alikes(classes, "the data")
    return classes


def normalise_label_map(stored: List[str]) -> Tuple[List[str], List[str]]:
    """(class names in id order, notes): a persisted label map in normalised form, with no duplicates.

    A label map written before names were normalised may hold one class twice (e.g. 'café' in NFC at id 0 and
    in NFD at id 2). The first id is kept and later duplicates are dropped, so the classes after a dropped entry
    move down one id; each such change is returned as a note to log and report.

    Raises:
      ClassNameError: look-alike names (see `check_look_alikes`).
    """
    names: List[str] = []
    first_id: Dict[str, int] = {}
    notes = []
    for old_id, entry in enumerate(stored):
        name = class_name_of(entry)
        if name in first_id:
            kept = first_id[name]
            notes.append(f"{code_points(entry)} at id {old_id} is the same class as {code_points(stored[kept])} "
                         f"at id {kept}: merged into id {kept}")
            continue
        first_id[name] = old_id
        if name != entry:
            notes.append(f"{code_points(entry)} at id {old_id} is now written {code_points(name)}")
        names.append(name)
    moved = [f"{name!r} {first_id[name]} -> {new_id}" for new_id, name in enumerate(names) if first_id[name] != new_id]
    if moved:
        notes.append("class ids changed: " + ", ".join(moved))
    check_look_alikes(names, "the label map")
    return names, notes
