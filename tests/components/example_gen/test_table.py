"""Tables of texts (table.py) and where layout.py finds them: reading, row checks, row keys (no Beam)."""
import codecs
import hashlib
import os
import random
import re

import pytest

from hubtfx.components.example_gen import layout as layout_lib
from hubtfx.components.example_gen import table as table_lib
from hubtfx.components.example_gen.layout import DataLayoutError
from hubtfx.components.example_gen.split import SplitRule
from hubtfx.components.modality.text import MAX_TEXT_BYTES


def _write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def _texts(table):
    """{line: (text, class)} of the usable rows."""
    return {row.line: (row.text.decode("utf-8"), row.class_name) for row in table.rows}


def test_quoted_multi_line_fields_a_byte_order_mark_and_crlf_lines_are_read(tmp_path):
    suffix, d = ".csv", ","  # a TSV has no quoting: see test_quotes_in_a_tsv_are_text...
    content = (
        f"text{d}label\r\n"
        f'"first line\r\nsecond line{d} with the delimiter"{d}pos\r\n'  # lines 2-3
        f'"she said ""hi"""{d}neg\r\n'  # line 4
        "\r\n"  # a blank line is no row
        f"plain text{d}neg\r\n"  # line 6
        f'"three\nlines\nlong"{d}"pos"\n'  # lines 7-9, \n inside a \r\n file
        f"last{d}pos"  # line 10, no final line break
    )
    path = _write(tmp_path / f"reviews{suffix}", codecs.BOM_UTF8 + content.encode("utf-8"))

    table = table_lib.read_table(path)

    assert _texts(table) == {
        2: (f"first line\r\nsecond line{d} with the delimiter", "pos"),
        4: ('she said "hi"', "neg"),
        6: ("plain text", "neg"),
        7: ("three\nlines\nlong", "pos"),
        10: ("last", "pos"),
    }
    assert (table.records, table.skipped, table.class_names) == (5, [], ["neg", "pos"])
    assert table.name == f"reviews{suffix}"


def test_columns_are_found_by_name_in_any_order_with_other_columns_ignored(tmp_path):
    path = _write(tmp_path / "t.csv", b"id, Sentiment ,comment,Review\n1,good,x,Loved it\n2,bad,y,Hated it\n")
    table = table_lib.read_table(path, text_column="Review", label_column="Sentiment")
    assert _texts(table) == {2: ("Loved it", "good"), 3: ("Hated it", "bad")}


@pytest.mark.parametrize("columns, missing", [(("text", "label"), "'text'"), (("body", "stars"), "'stars'")])
def test_a_missing_column_names_the_header_columns_and_both_flags(tmp_path, columns, missing):
    path = _write(tmp_path / "t.tsv", b"body\trating\nnice\t5\n")
    with pytest.raises(DataLayoutError) as error:
        table_lib.read_table(path, *columns)
    message = str(error.value)
    assert f"column {missing}" in message
    assert "['body', 'rating']" in message
    assert "--text-column" in message and "--label-column" in message


def test_refuses_tables_that_cannot_be_trained_on_with_what_to_do(tmp_path):
    cases = {
        "empty.csv": (b"", "is empty"),
        "header_only.csv": (b"text,label\n", "no data rows"),
        "one_class.csv": (b"text,label\na,pos\nb,pos\nc,\n", r"only the class 'pos'.*1 label.*two classes"),
        "utf16.csv": ("text,label\na,pos\n".encode("utf-16"), "UTF-16.*save it as UTF-8"),
        "twice.csv": (b"text,label,text\na,pos,b\n", "2 columns named 'text'"),
        "lookalike.csv": ("text,label\na,caf\u00e9\nb,cafe\u0301x\nc,\uff43af\u00e9\n".encode(), "look alike"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(DataLayoutError, match=message):
            table_lib.read_table(_write(tmp_path / name, content))


def test_every_unusable_row_is_reported_with_its_line_and_every_good_row_is_kept(tmp_path):
    good = [f"good text {i}" for i in range(11)]
    lines = [
        b"text,label",  # 1
        good[0].encode() + b",pos",  # 2
        b"a,b,pos",  # 3: fields
        good[1].encode() + b",",  # 4: empty label
        good[2].encode() + b",\xffneg",  # 5: label not UTF-8
        b"caf\xe9 latin-1,neg",  # 6: text not UTF-8
        b'"   ",pos',  # 7: blank text
        b"big," + b"pos",  # 8: placeholder, replaced below by an over-limit text
        good[0].encode() + b",pos",  # 9: duplicate of line 2
        b"ambiguous,pos",  # 10: conflict
        good[3].encode() + b",neg",  # 11
        b"ambiguous,neg",  # 12: conflict
        b"nul\x00inside,neg",  # 13: kept (a NUL is text)
        good[4].encode() + b", pos ",  # 14: label read as 'pos'
        *[text.encode() + b",neg" for text in good[5:9]],  # 15-18
        b'"unclosed,neg',  # 19: its field takes in the rest of the file, lines 19-21
        good[9].encode() + b",neg",
        good[10].encode() + b",pos",
    ]
    lines[7] = b'"' + b"x" * (MAX_TEXT_BYTES + 1) + b'",pos'
    path = _write(tmp_path / "t.csv", b"\r\n".join(lines) + b"\n")

    table = table_lib.read_table(path)

    kept = _texts(table)
    assert sorted(kept) == [2, 11, 13, 14, 15, 16, 17, 18]
    assert kept[13] == ("nul\x00inside", "neg") and kept[14] == (good[4], "pos")
    skipped = {row.line: (row.cause, row.class_name, row.reason) for row in table.skipped}
    assert {line: cause for line, (cause, _, _) in skipped.items()} == {
        3: "fields", 4: "label", 5: "label", 6: "text", 7: "text", 8: "text", 9: "duplicate", 10: "conflict",
        12: "conflict", 19: "fields"}
    assert len(table.rows) + len(table.skipped) == table.records == 18
    assert table.skipped_per_cause() == {"fields": 2, "label": 2, "text": 3, "duplicate": 1, "conflict": 2}
    expected_reasons = {
        3: r"3 field\(s\) where the header has 2 \(line 3\): quote",
        4: "empty label in column 'label': write the row's class there",
        5: "label in column 'label' is not UTF-8 .*save the table as UTF-8",
        6: r"not UTF-8 text \(invalid byte at offset 3\)",
        7: "empty text .* in column 'text': write the text, or delete the row",
        8: "over the 1,048,576-byte limit.*shorten it",
        9: r"duplicate of line 2 \(same text, same label\)",
        10: "conflicting labels: .*'pos' on line 10, 'neg' on line 12",
        12: "conflicting labels: .*'pos' on line 10, 'neg' on line 12",
        19: "lines 19-21, read as one record, so any rows on lines 20-21 are in it too.*opened on line 19 is not "
            "closed",
    }
    for line, pattern in expected_reasons.items():
        assert re.search(pattern, skipped[line][2]), (line, skipped[line])
    # Rows with a readable label count under their class; the others under none.
    assert {line: cls for line, (_, cls, _) in skipped.items()} == {
        3: None, 4: None, 5: None, 6: "neg", 7: "pos", 8: "pos", 9: "pos", 10: "pos", 12: "neg", 19: None}
    record = next(row for row in table.skipped if row.line == 9).report_record(table.name)
    assert record == {"file": "t.csv:9", "row": 9, "class": "pos", "cause": "duplicate",
                      "reason": skipped[9][2]}


def test_label_spellings_of_one_class_are_merged_and_noted(tmp_path):
    path = _write(tmp_path / "t.csv", "text,label\na,caf\u00e9\nb,cafe\u0301\nc, caf\u00e9\nd,tea\n".encode())
    table = table_lib.read_table(path)
    assert table.class_names == ["caf\u00e9", "tea"]
    assert {row.class_name for row in table.rows} == {"caf\u00e9", "tea"}
    (note,) = table.name_notes()
    assert "U+0301" in note and "read as class 'caf\u00e9'" in note


def test_a_rows_key_is_its_texts_hash_so_its_split_survives_reordering_inserting_and_renaming(tmp_path):
    rule = SplitRule.from_eval_percent(20)
    texts = [f"review number {i}" for i in range(40)]
    rows = [(text, "pos" if i % 2 else "neg") for i, text in enumerate(texts)]

    def table_of(name, rows):
        content = "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)
        return table_lib.read_table(_write(tmp_path / name, content.encode()))

    def keys(table):
        return {row.text.decode(): row.key for row in table.rows}

    first = keys(table_of("export.csv", rows))
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    inserted = [("a new review", "pos"), *shuffled[:20], ("another one", "neg"), *shuffled[20:]]
    again = keys(table_of("export (2).csv", inserted))

    assert {text: again[text] for text in texts} == first
    assert first[texts[0]] == "text#" + hashlib.sha256(texts[0].encode()).hexdigest()[:16]
    assert len(set(first.values())) == len(texts)
    splits = {rule.hashed_split(key) for key in first.values()}
    assert splits == {"train", "eval"}, "the keys spread over both splits"


def test_the_layout_finds_a_table_as_the_data_root_or_alone_in_it(tmp_path):
    table = _write(tmp_path / "data" / "Reviews.TSV", b"text\tlabel\na\tx\n")
    _write(tmp_path / "data" / "README.md", b"ignored")
    _write(tmp_path / "data" / ".hidden.csv", b"ignored")

    as_file = layout_lib.scan_input(table)
    in_folder = layout_lib.scan_input(str(tmp_path / "data"))

    assert as_file == layout_lib.TableLayout(input_base=table, root=table, span=None, path=table)
    assert in_folder == layout_lib.TableLayout(str(tmp_path / "data"), str(tmp_path / "data"), None, table)
    assert layout_lib.table_delimiter(table) == "\t"
    assert layout_lib.fingerprint_file_count(layout_lib.input_fingerprint(in_folder)) == 1


def test_the_layout_refuses_ambiguous_tables_and_keeps_reading_class_folders(tmp_path):
    two = tmp_path / "two"
    _write(two / "a.csv", b"text,label\n")
    _write(two / "b.tsv", b"text\tlabel\n")
    with pytest.raises(DataLayoutError, match=r"several tables \['a.csv', 'b.tsv'\].*exactly one"):
        layout_lib.scan_input(str(two))
    with pytest.raises(DataLayoutError, match="is a file but not a table.*.csv.*.tsv"):
        layout_lib.scan_input(_write(tmp_path / "notes.json", b"{}"))

    folders = tmp_path / "folders"
    for path in ("pos/a.txt", "neg/b.txt", "labels.csv"):  # a table beside class folders is a top-level file
        _write(folders / path, b"text,label\n")
    scanned = layout_lib.scan_input(str(folders))
    assert isinstance(scanned, layout_lib.Layout) and scanned.class_names == ["neg", "pos"]


def test_spans_of_tables_resolve_to_the_latest_span_holding_one(tmp_path):
    for span in ("span-1", "span-2", "span-10"):
        _write(tmp_path / span / f"{span}.csv", b"text,label\na,x\n")
    os.makedirs(tmp_path / "span-11")  # being created: no table yet
    latest = layout_lib.scan_input(str(tmp_path), use_spans=True)
    assert (latest.span, latest.root, latest.path) == (
        10, str(tmp_path / "span-10"), str(tmp_path / "span-10" / "span-10.csv"))
    assert layout_lib.resolve_span(str(tmp_path)) == (10, "span-10/*/*")


def test_quotes_in_a_tsv_are_text_and_a_bad_csv_quote_costs_only_its_own_row(tmp_path):
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text('text\tlabel\n"Great" movie, really\tpos\n"unclosed quote\tneg\nplain text\tneg\n', encoding="utf-8")
    rows = table_lib.read_table(str(tsv)).rows
    assert [r.text.decode() for r in rows] == ['"Great" movie, really', '"unclosed quote', "plain text"]
    csv_file = tmp_path / "reviews.csv"
    csv_file.write_text('text,label\n"Great" movie,pos\ngood one,pos\n"fine, really",neg\nok,neg\n', encoding="utf-8")
    read = table_lib.read_table(str(csv_file))
    assert [r.text.decode() for r in read.rows] == ["good one", "fine, really", "ok"]
    [skipped] = read.skipped
    assert skipped.line == 2 and skipped.cause == table_lib.FIELDS and "quote" in skipped.reason


def test_a_semicolon_separated_csv_gets_its_own_advice(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text;label\nhello;pos\n", encoding="utf-8")
    with pytest.raises(DataLayoutError, match="semicolon-separated"):
        table_lib.read_table(str(path))
