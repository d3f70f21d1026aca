"""Conversion of main()'s return value to JSON."""

import enum
import json
from decimal import Decimal

import pytest

from pyexec_worker.jsonify import NotJSON, dumps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"sum": 4}, b'{"sum":4}'),
        ([1, 2.5, None, True, "x"], b'[1,2.5,null,true,"x"]'),
        ((1, (2, 3)), b"[1,[2,3]]"),
        ("[1, 2]", b'"[1, 2]"'),  # a str stays a JSON string, never parsed
        ("h\u00e9llo \u2603", '"h\u00e9llo \u2603"'.encode()),
        ({1: "a", None: "b"}, b'{"1":"a","null":"b"}'),
        (None, b"null"),
        (10**30, b"1000000000000000000000000000000"),
    ],
)
def test_json_values(value, expected):
    assert dumps(value) == expected
    json.loads(dumps(value))


def test_int_and_str_subclasses_become_plain_json():
    class Colour(enum.IntEnum):
        RED = 1

    class Tag(str, enum.Enum):  # noqa: UP042 (the pre-3.11 idiom users write)
        A = "a"

    assert dumps([Colour.RED, Tag.A]) == b'[1,"a"]'


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "NaN/Infinity"),
        ({"a": [1, float("inf")]}, "result['a'][1]: float inf"),
        ({1, 2}, "set is not JSON serializable (use a list"),
        (b"raw", "bytes is not JSON serializable (decode it"),
        (Decimal("1.5"), "decimal.Decimal"),
        (object(), "object is not JSON serializable"),
        ({(1, 2): 3}, "dict key of type tuple"),
        (1j, "complex"),
    ],
)
def test_refusals_name_type_and_hint(value, needle):
    with pytest.raises(NotJSON) as info:
        dumps(value)
    assert needle in str(info.value)


def test_circular_reference_is_refused():
    a = []
    a.append(a)
    with pytest.raises(NotJSON, match="circular"):
        dumps(a)


def test_shared_but_acyclic_values_are_fine():
    shared = [1]
    assert dumps([shared, shared]) == b"[[1],[1]]"


def test_lone_surrogate_is_refused():
    with pytest.raises(NotJSON, match="surrogate"):
        dumps("\ud800")


def test_numpy_values_are_converted():
    np = pytest.importorskip("numpy")
    value = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "a": np.arange(3), "m": np.eye(2)}
    assert dumps(value) == b'{"i":3,"f":0.5,"b":true,"a":[0,1,2],"m":[[1.0,0.0],[0.0,1.0]]}'
    with pytest.raises(NotJSON, match="NaN"):
        dumps(np.array([1.0, np.nan]))


def test_pandas_frames_are_refused_with_a_hint():
    pd = pytest.importorskip("pandas")
    with pytest.raises(NotJSON, match=r"pandas.DataFrame .*df.to_dict\(\)"):
        dumps(pd.DataFrame({"a": [1]}))
    with pytest.raises(NotJSON, match=r"pandas.Series .*tolist"):
        dumps(pd.Series([1]))
