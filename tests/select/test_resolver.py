"""The class resolver (`splits.vocabulary.ClassResolver`): names and MIDs as users type them."""

from __future__ import annotations

import polars as pl
import pytest

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.splits import vocabulary
from openimages_pipe.splits.vocabulary import ClassResolver, MatchedBy

V6_NAMES = {
    "/m/01yrx": "Cat", "/m/01xq0k1": "Cattle", "/m/0bt9lr": "Dog", "/m/0kmg4": "Teddy bear",
    "/m/07pbfj": "Fish", "/m/0ch_cf": "Fish", "/m/01c_0l": "Ducks, geese and swans",
}  # fmt: skip


def resolver(names: dict[str, str] = V6_NAMES) -> ClassResolver:
    table = pl.DataFrame({"label_name": list(names), "display_name": list(names.values())})
    return ClassResolver(table)


def mids(values: list[str], names: dict[str, str] = V6_NAMES) -> list[tuple[str, ...]]:
    return [r.label_names for r in resolver(names).resolve(values)]


def test_names_match_ignoring_case_spaces_and_underscores() -> None:
    typed = ["cat", "  CATTLE ", "teddy_bear", "TeddyBear", "teddy  bear", "/m/0bt9lr"]
    assert mids(typed) == [("/m/01yrx",), ("/m/01xq0k1",), *[("/m/0kmg4",)] * 3, ("/m/0bt9lr",)]
    found = resolver().resolve(["/m/0bt9lr", "dog"])
    assert [r.matched_by for r in found] == [MatchedBy.MID, MatchedBy.NAME]
    assert found[0].display_names == ("Dog",)


def test_commas_separate_classes_unless_the_whole_value_is_one() -> None:
    assert mids(["Cat,Dog", "cattle"]) == [("/m/01yrx",), ("/m/0bt9lr",), ("/m/01xq0k1",)]
    assert mids(["ducks, geese and swans"]) == [("/m/01c_0l",)]


def test_an_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(InputError) as e:
        resolver().resolve(["Dog", "Catt"])
    message = str(e.value)
    assert 'unknown class "Catt": did you mean: "Cat", "Cattle"?' in message
    assert "\n" not in message
    with pytest.raises(InputError, match='unknown class "zzzz": no class of that name'):
        resolver().resolve(["zzzz"])


def test_a_shared_name_selects_every_mid_and_says_so() -> None:
    (fish,) = resolver().resolve(["fish"])
    assert fish.label_names == ("/m/07pbfj", "/m/0ch_cf")
    assert fish.note == '"fish" names 2 classes (/m/07pbfj, /m/0ch_cf): all selected'
    assert resolver().resolve(["cat"])[0].note is None


def test_a_mid_the_names_lack_is_taken_with_a_note() -> None:
    (other,) = resolver().resolve(["/m/0abc123"])
    assert other.label_names == ("/m/0abc123",) and other.display_names == (None,)
    assert "not in the class names" in other.note


def test_the_table_lists_each_mid_once_with_the_query_that_chose_it() -> None:
    table = vocabulary.resolved_table(resolver().resolve(["fish", "/m/07pbfj", "Cat"]))
    assert table.rows() == [
        ("/m/07pbfj", "Fish", "fish"), ("/m/0ch_cf", "Fish", "fish"), ("/m/01yrx", "Cat", "Cat"),
    ]  # fmt: skip


def test_the_shipped_dict_csv_resolves_real_v1_names(dict_csv) -> None:
    names = vocabulary.read_class_names(packaged.dict_csv())
    found = ClassResolver(names, packaged.dict_csv()).resolve(["Cat", "dog", "trunk"])
    assert found[0].label_names == ("/m/01yrx",) and found[1].label_names == ("/m/0bt9lr",)
    assert len(found[2].label_names) == 3  # V1's dict.csv has three MIDs named "trunk"
    with pytest.raises(InputError, match=r'did you mean: "cat"'):
        ClassResolver(names, packaged.dict_csv()).resolve(["catt"])
