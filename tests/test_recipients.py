"""Issue 4: recipient lists as organisations keep them (unit level on recipients.resolve)."""

from __future__ import annotations

import email
from email import policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from dispatch.email.headers import encode_words
from dispatch.email.message import to_header
from dispatch.errors import InputError
from dispatch.models import Recipient
from dispatch.recipients.lists import AddressError, normalise, resolve


def write(directory: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = directory / name
    path.write_text(text, encoding=encoding, newline="")
    return path


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    directory = tmp_path / "recipients"
    directory.mkdir()
    return directory


# -- folding -------------------------------------------------------------------


@pytest.mark.parametrize("raw, address, key", [
    ("  Karin.Eriksson@Example.ORG \t", "Karin.Eriksson@example.org", "karin.eriksson@example.org"),
    ("anna@BÜCHER.example", "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example"),
    ("anna@bu\u0308cher.example", "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example"),  # NFD -> NFC
    ("a#b+tag@example.org", "a#b+tag@example.org", "a#b+tag@example.org"),
])
def test_normalise_folds_case_whitespace_nfc_and_idna(raw: str, address: str, key: str) -> None:
    assert normalise(raw) == (address, key)


@pytest.mark.parametrize("raw, reason", [
    ("jörg@example.org", "SMTPUTF8"),
    ("utan-snabel-a.example.org", "'@'"),
    ("a..b@example.org", "two periods"),
    ("x@example", "period"),
    ("anna@example.org\r\nBcc: evil@example.org", "control character"),
    ("x" * 65 + "@example.org", "too long"),
])
def test_normalise_rejects_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        normalise(raw)


def test_duplicate_in_different_case_across_yaml_and_csv_is_one_person_first_name_kept(lists: Path) -> None:
    write(lists, "ledning.yaml", "name: Politisk ledning\nmembers:\n"
          "  - {email: Karin.Eriksson@Example.org, name: Karin Eriksson}\n"
          "  - {email: anna@example.org}\n")
    write(lists, "chefer.csv", "email,name\nKARIN.ERIKSSON@EXAMPLE.ORG,K. Eriksson (chef)\nAnna@Example.org,Anna Andersson\n")
    result = resolve(lists, ["ledning", "chefer"])
    assert list(result.recipients) == ["karin.eriksson@example.org", "anna@example.org"]
    karin = result.recipients["karin.eriksson@example.org"]
    assert (karin.address, karin.name) == ("Karin.Eriksson@example.org", "Karin Eriksson")
    # Anna had no name in the first list: the first name seen is the CSV's.
    assert result.recipients["anna@example.org"].name == "Anna Andersson"
    assert result.overlaps() == {("ledning", "chefer"): 2}
    assert result.lists["ledning"].display_name == "Politisk ledning"
    assert not result.problems


# -- include ---------------------------------------------------------------------


def test_include_resolves_nested_lists_once(lists: Path) -> None:
    write(lists, "alla.yaml", "name: Alla\nmembers: [a@example.org]\ninclude: [chefer, ledning]\n")
    write(lists, "chefer.yaml", "name: Chefer\nmembers: [b@example.org]\ninclude: [bas]\n")
    write(lists, "ledning.yaml", "name: Ledning\nmembers: [c@example.org, B@example.org]\ninclude: [bas]\n")
    write(lists, "bas.csv", "email\nd@example.org\n")
    result = resolve(lists, ["alla"])
    assert result.lists["alla"].members == ["a@example.org", "b@example.org", "d@example.org", "c@example.org"]
    assert result.lists["alla"].includes == ["chefer", "ledning"]


def test_include_cycle_is_an_error_naming_the_files(lists: Path) -> None:
    write(lists, "a.yaml", "name: A\nmembers: [a@example.org]\ninclude: [b]\n")
    write(lists, "b.yaml", "name: B\nmembers: [b@example.org]\ninclude:\n  - c\n")
    write(lists, "c.yaml", "name: C\nmembers: []\ninclude: [a]\n")
    with pytest.raises(InputError) as caught:
        resolve(lists, ["a"])
    (problem,) = caught.value.problems
    assert problem.path.endswith("c.yaml") and problem.line == 3
    assert "include cycle" in problem.message
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        assert name in problem.message
    assert problem.message.index("a.yaml") < problem.message.index("b.yaml") < problem.message.index("c.yaml")


def test_unknown_include_names_the_line(lists: Path) -> None:
    write(lists, "a.yaml", "name: A\nmembers: []\ninclude: [saknas, ../../etc/passwd]\n")
    with pytest.raises(InputError) as caught:
        resolve(lists, ["a"])
    assert [p.line for p in caught.value.problems] == [3, 3]
    assert "unknown recipient list 'saknas'" in caught.value.problems[0].message


# -- suppression -------------------------------------------------------------------


def test_suppressed_address_is_removed_from_every_list(lists: Path) -> None:
    write(lists, "suppressed.txt", "# left the region 2024-10\n  Gone@Example.org  # HR ticket 123\n\nx#y@example.org\n")
    write(lists, "a.yaml", "name: A\nmembers: [gone@example.org, stays@example.org]\n")
    write(lists, "b.csv", "email\nGONE@example.ORG\nx#y@example.org\n")
    write(lists, "c.yaml", "name: C\ninclude: [b]\n")
    result = resolve(lists, ["a", "b", "c"])
    assert list(result.recipients) == ["stays@example.org"]
    assert len(result.lists["a"].suppressed) == 1
    assert len(result.lists["b"].suppressed) == 2
    assert len(result.lists["c"].suppressed) == 2  # through its include
    assert not result.problems


def test_invalid_line_in_suppression_file_is_reported(lists: Path) -> None:
    write(lists, "suppressed.txt", "ok@example.org\nnot an address\n")
    write(lists, "a.yaml", "name: A\nmembers: [a@example.org]\n")
    result = resolve(lists, ["a"])
    assert [(Path(p.path).name, p.line) for p in result.problems] == [("suppressed.txt", 2)]


# -- CSV dialects --------------------------------------------------------------------


def test_semicolon_csv_with_bom_and_crlf(lists: Path) -> None:
    write(lists, "hr.csv", "Namn;Name;EMAIL;Förvaltning\r\n"
          "x;Björk, Annika;annika.bjork@example.org;Koncernkontoret\r\n"
          "y;Öberg, Mats;mats.oberg@example.org;SÄS\r\n"
          ";;;\r\n", encoding="utf-8-sig")
    assert (lists / "hr.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    result = resolve(lists, ["hr"])
    assert [(r.address, r.name) for r in result.recipients.values()] == [
        ("annika.bjork@example.org", "Björk, Annika"), ("mats.oberg@example.org", "Öberg, Mats"),
    ]
    assert not result.problems


def test_comma_csv_without_bom_and_quoted_fields(lists: Path) -> None:
    write(lists, "hr.csv", 'name,email\n"Björk, Annika ""Nina""",annika.bjork@example.org\n')
    result = resolve(lists, ["hr"])
    assert result.recipients["annika.bjork@example.org"].name == 'Björk, Annika "Nina"'


def test_csv_without_email_column_is_fatal(lists: Path) -> None:
    write(lists, "hr.csv", "namn;epost\nA;a@example.org\n")
    with pytest.raises(InputError, match="header with an 'email' column"):
        resolve(lists, ["hr"])


def test_csv_in_latin1_is_fatal_with_a_hint(lists: Path) -> None:
    write(lists, "hr.csv", "email;name\nasa@example.org;Åsa\n", encoding="cp1252")
    with pytest.raises(InputError, match="CSV UTF-8"):
        resolve(lists, ["hr"])


# -- invalid entries and header injection ------------------------------------------


def test_invalid_entries_are_reported_with_path_and_line_and_do_not_block(lists: Path) -> None:
    write(lists, "hr.csv", "email,name\nok@example.org,Ok\nnot-an-address,Trasig\njörg@example.org,Jörg\n,Utan adress\n")
    write(lists, "a.yaml", "name: A\nmembers:\n  - {email: fine@example.org}\n  - {name: Ingen adress}\n  - {email: 'a..b@example.org'}\n")
    result = resolve(lists, ["hr", "a"])
    assert list(result.recipients) == ["ok@example.org", "fine@example.org"]
    where = [(Path(i.problem.path).name, i.problem.line) for i in result.invalid]
    assert where == [("hr.csv", 3), ("hr.csv", 4), ("hr.csv", 5), ("a.yaml", 4), ("a.yaml", 5)]
    assert "SMTPUTF8" in result.invalid[1].problem.message
    assert result.problems == [i.problem for i in result.invalid]
    assert result.lists["hr"].invalid == 3


def test_newline_in_name_is_rejected_with_path_and_line(lists: Path) -> None:
    write(lists, "hr.csv", 'email;name\nok@example.org;Ok\nevil@example.org;"Eve\r\nBcc: all@example.org"\nlast@example.org;Last\n')
    write(lists, "a.yaml",
          'name: A\nmembers:\n  - {email: ok2@example.org}\n  - {email: evil2@example.org, name: "Eve\\nBcc: x@example.org"}\n')
    result = resolve(lists, ["hr", "a"])
    assert list(result.recipients) == ["ok@example.org", "last@example.org", "ok2@example.org"]
    assert [(Path(i.problem.path).name, i.problem.line) for i in result.invalid] == [("hr.csv", 3), ("a.yaml", 4)]
    assert all("line break or control character" in i.problem.message for i in result.invalid)
    # The record after the multi-line one keeps its own line number.
    assert result.recipients["last@example.org"].source.endswith("hr.csv:5")


def test_surrounding_whitespace_is_trimmed_not_rejected(lists: Path) -> None:
    write(lists, "a.yaml", 'name: A\nmembers:\n  - email: "\\tanna@example.org\\n"\n    name: |\n      Anna Andersson\n')
    result = resolve(lists, ["a"])
    assert [(r.address, r.name) for r in result.recipients.values()] == [("anna@example.org", "Anna Andersson")]
    assert not result.problems


def test_control_character_in_address_is_rejected(lists: Path) -> None:
    write(lists, "a.yaml", 'name: A\nmembers:\n  - {email: "ok@example.org\\u0085x"}\n')
    result = resolve(lists, ["a"])
    assert not result.recipients
    assert "\\x85" in result.invalid[0].email  # stored escaped, never raw


# -- To header --------------------------------------------------------------------


def test_to_header_for_a_name_with_a_umlaut_comma_and_quotes() -> None:
    name = 'Björk, Annika "Nina"'
    header = to_header([Recipient("annika.bjork@example.org", name, "annika.bjork@example.org")])
    assert header.isascii() and header.endswith(" <annika.bjork@example.org>")
    parsed = email.message_from_bytes(f"To: {header}\r\n\r\n".encode(), policy=policy.default)
    (address,) = parsed["To"].addresses
    assert (address.display_name, address.addr_spec) == (name, "annika.bjork@example.org")


def test_to_header_quotes_ascii_specials() -> None:
    header = to_header([Recipient("a@example.org", 'Doe, John "JD"', "a@example.org")])
    assert header == '"Doe, John \\"JD\\"" <a@example.org>'


def test_long_names_become_several_short_encoded_words_on_one_line() -> None:
    name = "Åsa Öberg-Lindqvist Håkansson Ängström, Koncernstab kommunikation, Västra Götaland"
    words = " ".join(encode_words(name))
    assert "\n" not in words and all(len(w) <= 75 for w in words.split(" "))
    # RFC 2047 decoding (whitespace between adjacent encoded-words is dropped).
    assert str(make_header(decode_header(words))) == name
