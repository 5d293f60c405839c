"""Tables of labelled texts: a CSV or TSV file -> the rows ExampleGen writes as examples, and why it skips others.

Where the table is (the data root itself, the one table in it, or in its span folder) is layout.py's; this module
reads it. Format:

- UTF-8; a leading byte order mark is dropped (Excel's "CSV UTF-8" writes one). A file in UTF-16 is refused as a
  whole, with how to re-save it.
- Comma-separated (.csv) or tab-separated (.tsv), in Python's `csv` dialect: a field that holds the delimiter, a
  quote or a line break is quoted ("..."), a quote inside it doubled (""). Blank lines are not records.
- The first record is the header. The text and the label column are found by name (`text_column`,
  `label_column`, white space around a header name ignored); other columns are ignored.

Each later record (a row) becomes one example, or is skipped with a reason that says what to fix (`cause`):

  fields      its number of fields differs from the header's (an unquoted delimiter or line break, an unclosed
              quote that swallowed the following lines: the reason names the lines the record spans)
  label       the label is empty, or not UTF-8
  text        TextModality's `text_refusal`: empty, not UTF-8, over MAX_TEXT_BYTES
  duplicate   the same text with the same class as an earlier row, which is kept
  conflict    the same text with different classes: every row of that text is skipped (which label is right
              cannot be known)

A row is named by its line number: the 1-based line of the table file its record starts on (the header is line 1
when the file starts with it). Bytes that are not UTF-8 only make their own row unusable; they never stop the
ingestion nor drop another row.

A label is read as a class name the way a class folder's name is (class_names.py: Unicode NFC, white space
around it removed), so " pos" and "pos" are one class, and look-alike labels are refused.

Row key: the `filename` feature of a row's example, which is also the train/eval split key (split.py), is
"text#" + the first 16 hex digits of the SHA-256 of the text's UTF-8 bytes. It depends on the text alone, not on
the row's position nor on the table's file name, so re-exporting the table with rows inserted, deleted or
reordered (or under another file name) keeps every text in its split. Identical texts therefore share a split:
a text repeated in a later span, or under another label after a correction, never lands in train in one place
and in eval in another.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import os
from typing import Dict, Iterator, List, Optional, Set, Tuple

import tensorflow as tf

from hubtfx.components.common import feature_keys
from hubtfx.components.example_gen import class_names as class_names_lib
from hubtfx.components.example_gen import layout as layout_lib
from hubtfx.components.modality import text as text_lib
from hubtfx.components.modality.base import Modality

DEFAULT_TEXT_COLUMN = feature_keys.DEFAULT_TEXT_COLUMN
DEFAULT_LABEL_COLUMN = feature_keys.DEFAULT_LABEL_COLUMN
# The modalities whose examples a table's text column holds; any other is refused before reading.
TABLE_MODALITIES = ("text",)
ROW_KEY_PREFIX = "text#"
ROW_KEY_HEX_DIGITS = 16

# Causes of a skipped row (the report's "cause" and skipped_per_cause keys).
FIELDS, LABEL, TEXT, DUPLICATE, CONFLICT = "fields", "label", "text", "duplicate", "conflict"
CAUSES = (FIELDS, LABEL, TEXT, DUPLICATE, CONFLICT)

# The csv module refuses a field over 128 KiB by default and would stop the whole table at one long text; the
# length of a text is text_refusal's to judge (MAX_TEXT_BYTES). The limit is process-wide: it is only raised.
_FIELD_SIZE_LIMIT = 2**31 - 1
# Python 3.10's csv reader refuses NUL characters ("line contains NUL") and, inside a quoted field, loses its
# place after that error; NUL is swapped for a lone surrogate the reader passes through, and back per field.
# U+DC00 never comes out of decoding: "surrogateescape" maps undecodable bytes to U+DC80..U+DCFF only.
_NUL, _NUL_STAND_IN = "\x00", "\udc00"
_MAX_LINES_NAMED = 5  # lines listed in a conflict's reason


@dataclasses.dataclass(frozen=True)
class Row:
    """A usable row: one example.

    Attributes:
      line: the line its record starts on (1-based).
      text: the text's UTF-8 bytes (the raw feature).
      class_name: its label as a class name (class_names.class_name_of).
      key: the row key (`row_key`), the example's `filename` feature.
    """

    line: int
    text: bytes = dataclasses.field(repr=False)
    class_name: str
    key: str


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    """A row that is no example: its line, its class (None when it has no readable label), cause and reason."""

    line: int
    class_name: Optional[str]
    cause: str
    reason: str

    def report_record(self, table_name: str) -> Dict[str, object]:
        """The ingestion report's entry: {"file": "<table>:<line>", "row", "class", "cause", "reason"}."""
        return {"file": f"{table_name}:{self.line}", "row": self.line, "class": self.class_name,
                "cause": self.cause, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Table:
    """A read table.

    Attributes:
      path: the table file.
      records: its data rows (records after the header; blank lines are none), usable or not.
      rows: the usable rows, by line.
      skipped: the other rows, by line (len(rows) + len(skipped) == records).
      labels: class name -> the label spellings that stand for it (several when they differ only in Unicode
        normalisation or surrounding white space), for every class with a readable label, usable rows or not.
      digest: SHA-256 (hex) of the file's bytes, to tell that a second read saw the same table.
    """

    path: str
    records: int
    rows: List[Row] = dataclasses.field(repr=False)
    skipped: List[SkippedRow] = dataclasses.field(repr=False)
    labels: Dict[str, List[str]] = dataclasses.field(repr=False)
    digest: str

    @property
    def name(self) -> str:
        """The table's file name, e.g. 'reviews.csv'."""
        return os.path.basename(self.path)

    @property
    def class_names(self) -> List[str]:
        """Class names, sorted: the default class-id order."""
        return sorted(self.labels)

    def skipped_per_cause(self) -> Dict[str, int]:
        """{cause: skipped rows} for every cause in CAUSES (0 included, so the report's keys are fixed)."""
        counts = collections.Counter(row.cause for row in self.skipped)
        return {cause: counts[cause] for cause in CAUSES}

    def name_notes(self) -> List[str]:
        """One line per class whose label spelling(s) differ from its class name, for the user to see."""
        notes = []
        for name in self.class_names:
            spellings = self.labels[name]
            if spellings != [name]:
                spelled = " and ".join(class_names_lib.code_points(label) for label in spellings)
                notes.append(
                    f"label(s) {spelled} of {self.name} read as class {class_names_lib.code_points(name)}: the same "
                    "name after Unicode NFC normalisation and trimming white space; write each class one way"
                )
        return notes


def check_modality_reads_tables(modality: Modality, table_path: str) -> None:
    """Refuses a table for a modality whose examples are not texts.

    Raises:
      layout.DataLayoutError: naming the modality and the two ways out.
    """
    if modality.name not in TABLE_MODALITIES:
        raise layout_lib.DataLayoutError(
            f"the data root {table_path!r} is a table of texts, but the module's modality is {modality.name!r} "
            f"({modality.accepted_description}); only the {', '.join(TABLE_MODALITIES)} modality reads tables. "
            f"Use a text module, or point the data root at a folder with one sub-folder per class."
        )


def row_key(text: bytes) -> str:
    """A row's key: "text#" + the first 16 hex digits of the text's SHA-256 (see the module docstring)."""
    return ROW_KEY_PREFIX + hashlib.sha256(text).hexdigest()[:ROW_KEY_HEX_DIGITS]


def read_table(path: str, text_column: str = DEFAULT_TEXT_COLUMN,
               label_column: str = DEFAULT_LABEL_COLUMN) -> Table:
    """Reads and judges every row of the table at `path` (any file system tf.io.gfile supports).

    Args:
      path: a .csv or .tsv file (the delimiter follows the suffix).
      text_column, label_column: header names of the text and the label column.

    Returns the Table: usable rows, skipped rows with their reasons, classes.

    Raises:
      layout.DataLayoutError: the table cannot be read, is empty or UTF-16, has no data rows, lacks a column (the
        message names the header's columns and the --text-column / --label-column flags), its labels name fewer
        than two classes, or look alike (class_names.check_look_alikes).
    """
    content = _read_bytes(path)
    records = _records(_decode(content, path), layout_lib.table_delimiter(path), path)
    header = next(records, None)
    if header is None:
        raise layout_lib.DataLayoutError(f"table {path!r} is empty: write a header row naming the columns "
                                         f"(e.g. {text_column!r} and {label_column!r}), then one row per text.")
    if header.error:
        raise layout_lib.DataLayoutError(f"table {path!r}: the header row (line {header.first_line}) {header.error}.")
    text_index, label_index = column_indexes(header.fields, text_column, label_column, path)
    judged = [_judge(record, len(header.fields), text_index, label_index, text_column, label_column)
              for record in records]
    candidates = [row for row, _ in judged if isinstance(row, Row)]
    rows, repeated = _resolve_repeats(candidates)
    skipped = sorted([row for row, _ in judged if isinstance(row, SkippedRow)] + repeated, key=lambda r: r.line)
    spellings: Dict[str, Set[str]] = {}
    for row, label in judged:
        if label is not None:
            spellings.setdefault(row.class_name, set()).add(label)
    table = Table(path=path, records=len(judged), rows=rows, skipped=skipped,
                  labels={name: sorted(labels) for name, labels in spellings.items()},
                  digest=hashlib.sha256(content).hexdigest())
    _check_classes(table, label_column)
    return table


def column_indexes(header: List[str], text_column: str, label_column: str, path: str) -> Tuple[int, int]:
    """(index of the text column, index of the label column) in a header record.

    Raises:
      layout.DataLayoutError: a column is missing (the message lists the header's columns and names the flags
        --text-column and --label-column) or named twice.
    """
    names = [_field_bytes(field).decode("utf-8", "replace").strip() for field in header]
    indexes = []
    for role, column in (("text", text_column), ("label", label_column)):
        found = [index for index, name in enumerate(names) if name == column.strip()]
        if not found:
            if len(names) == 1 and ";" in names[0]:
                raise layout_lib.DataLayoutError(
                    f"table {path!r} looks semicolon-separated (its header is the one column {names[0]!r}): save it "
                    "comma-separated (Excel: 'CSV UTF-8 (Comma delimited)') or tab-separated as .tsv.")
            raise layout_lib.DataLayoutError(
                f"table {path!r} has no {role} column {column!r}; its header has the columns {names}. Name the "
                f"table's text column with --text-column and its label column with --label-column "
                f"(ExampleGen's text_column / label_column; defaults {DEFAULT_TEXT_COLUMN!r} and "
                f"{DEFAULT_LABEL_COLUMN!r})."
            )
        if len(found) > 1:
            raise layout_lib.DataLayoutError(
                f"table {path!r} has {len(found)} columns named {column!r} (columns {names}): rename all but one, "
                f"so that the {role} column is unambiguous."
            )
        indexes.append(found[0])
    return indexes[0], indexes[1]


@dataclasses.dataclass(frozen=True)
class _Record:
    """One csv record: the lines it spans (1-based, inclusive) and its fields (decoding stand-ins included)."""

    first_line: int
    last_line: int
    fields: List[str]
    error: str = ""  # why the csv module could not parse it (strict quoting), "" for a parsed record


def _read_bytes(path: str) -> bytes:
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    except tf.errors.OpError as err:
        raise layout_lib.DataLayoutError(f"cannot read the table {path!r}: {err.message}") from None


def _decode(content: bytes, path: str) -> str:
    """The table's text for the csv reader: UTF-8 without a byte order mark; bytes that are not UTF-8 kept as
    lone surrogates (surrogateescape) so that only the fields holding them are refused; NUL swapped (see above).

    Raises:
      layout.DataLayoutError: a UTF-16 (or UTF-32) byte order mark: every row would be unreadable.
    """
    if content.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        raise layout_lib.DataLayoutError(
            f"table {path!r} is UTF-16 or UTF-32 (Excel's 'Unicode Text'): save it as UTF-8 (Excel: 'CSV UTF-8'; or "
            "`iconv -f utf-16 -t utf-8`)."
        )
    text = text_lib.strip_byte_order_mark(content).decode("utf-8", "surrogateescape")
    return text.replace(_NUL, _NUL_STAND_IN)


def _field_bytes(field: str) -> bytes:
    """A field's original bytes (undecodable bytes and NULs restored)."""
    return field.replace(_NUL_STAND_IN, _NUL).encode("utf-8", "surrogateescape")


def _records(text: str, delimiter: str, path: str) -> Iterator[_Record]:
    """The csv records of `text` with the lines each spans; blank lines are skipped.

    A CSV is read with strict quoting: a quote that opens a field must close it (`"Great" movie` is an error, which
    the default lenient mode would silently turn into `Great movie`); such a record comes back with its `error` and
    reading goes on with the next line. A TSV has no quoting convention (IANA text/tab-separated-values: fields
    hold no tab nor line break), so its quotes are text, kept as written.
    """
    del path
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
    quoting = {"quoting": csv.QUOTE_NONE} if delimiter == "\t" else {"strict": True}
    # newline="": line breaks inside quoted fields stay as written, and line_num counts \r\n, \n and \r lines.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, **quoting)
    previous = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield _Record(previous + 1, reader.line_num, [], error=(
                f"cannot be read as CSV ({err}): a field that starts with a quote must end with it, and a quote "
                "inside a quoted field is written twice (\"\"); fix the quoting, or delete the row"))
            previous = reader.line_num
            continue
        if fields:
            yield _Record(previous + 1, reader.line_num, fields)
        previous = reader.line_num


def _judge(record: _Record, header_size: int, text_index: int, label_index: int, text_column: str,
           label_column: str):
    """(Row or SkippedRow, the row's label as written or None when it has no readable label) of one record;
    the Row's duplicates are judged later, against the other rows (`_resolve_repeats`)."""
    line = record.first_line
    if record.error:
        if record.last_line > record.first_line:
            # An unclosed quote took the following lines (rows) into this record: the user must see the range.
            return SkippedRow(line, None, FIELDS, (
                f"lines {record.first_line}-{record.last_line}, read as one record, so any rows on lines "
                f"{record.first_line + 1}-{record.last_line} are in it too: {record.error} (a quote opened on line "
                f"{record.first_line} is not closed?)")), None
        return SkippedRow(line, None, FIELDS, record.error), None
    if len(record.fields) != header_size:
        return SkippedRow(line, None, FIELDS, _field_count_reason(record, header_size)), None
    label_bytes = _field_bytes(record.fields[label_index])
    try:
        label = label_bytes.decode("utf-8")
    except UnicodeDecodeError as err:
        return SkippedRow(line, None, LABEL, (
            f"label in column {label_column!r} is not UTF-8 (invalid byte at offset {err.start}): save the table as "
            "UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")), None
    class_name = class_names_lib.class_name_of(label)
    if not class_name:
        return SkippedRow(line, None, LABEL, f"empty label in column {label_column!r}: write the row's class there, "
                                             "or delete the row"), None
    text = _field_bytes(record.fields[text_index])
    reason = _text_reason(text, text_column)
    if reason is not None:
        return SkippedRow(line, class_name, TEXT, reason), label
    return Row(line=line, text=text, class_name=class_name, key=row_key(text)), label


def _field_count_reason(record: _Record, header_size: int) -> str:
    quote_fields = "quote (\"...\") a field that holds the delimiter or a line break, or delete the row"
    if record.first_line == record.last_line:
        return (f"{len(record.fields)} field(s) where the header has {header_size} (line {record.first_line}): "
                f"{quote_fields}")
    # A record over several lines either has a quoted line break, or a quote that was never closed and took the
    # following lines (rows) into its field: those rows are in this one, so the user must see the line range.
    return (f"{len(record.fields)} field(s) where the header has {header_size} (lines {record.first_line}-"
            f"{record.last_line}, read as one record, so any rows on lines {record.first_line + 1}-"
            f"{record.last_line} are in it too): if a quote (\") opened on line {record.first_line} is not "
            f"closed, close it (a quote inside a quoted field is written twice: \"\"); otherwise {quote_fields}")


def _text_reason(text: bytes, text_column: str) -> Optional[str]:
    """Why a row's text is no example (text_modality.text_refusal decides), worded for a table row; or None."""
    reason = text_lib.text_refusal(text)
    if reason is None:
        return None
    if len(text) > text_lib.MAX_TEXT_BYTES:  # text_refusal's advice is about files in class folders
        return (f"text of {len(text):,} bytes in column {text_column!r}, over the {text_lib.MAX_TEXT_BYTES:,}-byte "
                "limit (the model reads only its first words): shorten it, split it into several rows, or delete "
                "the row")
    if reason == text_lib.EMPTY:
        return f"{reason} in column {text_column!r}: write the text, or delete the row"
    return f"{reason} (column {text_column!r})"


def _resolve_repeats(candidates: List[Row]) -> Tuple[List[Row], List[SkippedRow]]:
    """(kept rows, skipped rows): of rows with the same text, the first is kept when all have one class (the
    others are duplicates), none when their classes differ (a conflict)."""
    by_text: Dict[str, List[Row]] = {}
    for row in candidates:
        by_text.setdefault(hashlib.sha256(row.text).hexdigest(), []).append(row)
    kept, skipped = [], []
    for group in by_text.values():
        classes = sorted({row.class_name for row in group})
        if len(classes) > 1:
            named = ", ".join(f"{row.class_name!r} on line {row.line}" for row in group[:_MAX_LINES_NAMED])
            more = f" and {len(group) - _MAX_LINES_NAMED} more" if len(group) > _MAX_LINES_NAMED else ""
            reason = (f"conflicting labels: the same text is labelled {named}{more}; correct the wrong label(s) "
                      "(every row of this text is skipped until they agree)")
            skipped.extend(SkippedRow(row.line, row.class_name, CONFLICT, reason) for row in group)
            continue
        first = group[0]
        kept.append(first)
        skipped.extend(SkippedRow(row.line, row.class_name, DUPLICATE,
                                  f"duplicate of line {first.line} (same text, same label), which is kept: delete "
                                  "the repeated row") for row in group[1:])
    return sorted(kept, key=lambda row: row.line), skipped


def _check_classes(table: Table, label_column: str) -> None:
    """Refuses a table whose labels name fewer than two classes, or look-alike classes."""
    try:
        class_names_lib.check_look_alikes(
            table.class_names, f"table {table.path!r}",
            fix=f"Correct the labels in column {label_column!r} so each class has one spelling (e.g. plain "
                "ASCII/half-width).")
    except class_names_lib.ClassNameError as err:
        raise layout_lib.DataLayoutError(str(err)) from None
    if len(table.class_names) >= 2:
        return
    if not table.records:
        raise layout_lib.DataLayoutError(f"table {table.path!r} has a header but no data rows: add one row per text.")
    found = f"only the class {table.class_names[0]!r}" if table.class_names else "no readable label"
    causes = ", ".join(f"{count} {cause}" for cause, count in table.skipped_per_cause().items() if count)
    raise layout_lib.DataLayoutError(
        f"table {table.path!r}: its {table.records} row(s) have {found} in column {label_column!r} (skipped rows "
        f"by cause: {causes or 'none'}): classification needs at least two classes. Label the rows with their "
        "classes, or check that --label-column names the label column."
    )
