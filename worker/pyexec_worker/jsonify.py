"""Convert the value ``main()`` returned into compact UTF-8 JSON.

Owns: what counts as JSON (dict, list, tuple, str, int, float, bool, None,
nested; numpy scalars via ``.item()`` and arrays via ``.tolist()``) and the
message for what does not (offending type, where it is, a hint). Must not:
import numpy or pandas itself (it recognises them by type, if loaded), or
parse a returned str (a str stays a JSON string).
"""

from __future__ import annotations

import json
import math
from typing import Any

# Bound when the zygote imports this module: a run that monkeypatches
# json.dumps (on purpose or not) cannot change how its result is encoded.
_encode = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode


class NotJSON(Exception):
    """The value (or a part of it) has no faithful JSON form."""


_HINTS = {
    "pandas.DataFrame": "use df.to_dict() or df.to_dict(orient='records')",
    "pandas.Series": "use series.tolist() or series.to_dict()",
    "pandas.Index": "use index.tolist()",
    "pandas.Timestamp": "use ts.isoformat()",
    "set": "use a list, e.g. sorted(the_set)",
    "frozenset": "use a list, e.g. sorted(the_set)",
    "bytes": "decode it, e.g. value.decode()",
    "bytearray": "decode it, e.g. value.decode()",
    "decimal.Decimal": "use float(value) or str(value)",
    "datetime.datetime": "use value.isoformat()",
    "datetime.date": "use value.isoformat()",
    "complex": "return the real and imaginary parts separately",
}


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("pandas."):
        module = "pandas"
    return f"{module}.{cls.__qualname__}"


def _refuse(value: Any, where: str, why: str | None = None) -> NotJSON:
    name = _type_name(value)
    text = why or f"{name} is not JSON serializable"
    hint = _HINTS.get(name)
    if hint is None and hasattr(value, "to_dict"):
        hint = "use .to_dict()"
    if hint is None and hasattr(value, "tolist"):
        hint = "use .tolist()"
    return NotJSON(f"{where}: {text}" + (f" ({hint})" if hint else ""))


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy"


def _convert(value: Any, where: str, path: set[int]) -> Any:
    # Exact types first: the common case stays fast.
    cls = type(value)
    if value is None or cls is bool or cls is int or cls is str:
        return value
    if cls is float or isinstance(value, float):
        return _float(float(value), where)
    if isinstance(value, (dict, list, tuple)):
        return _container(value, where, path)
    if isinstance(value, (bool, int, str)):  # subclasses (IntEnum, str enums)
        return value
    if _is_numpy(value):
        return _numpy(value, where, path)
    raise _refuse(value, where)


def _float(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise _refuse(value, where, f"float {value!r} is not valid JSON (NaN/Infinity)")
    return value


def _container(value: dict | list | tuple, where: str, path: set[int]) -> Any:
    if id(value) in path:
        raise _refuse(value, where, "circular reference")
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return {_key(k, where): _convert(v, f"{where}[{k!r}]", path) for k, v in value.items()}
        return [_convert(v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    finally:
        path.discard(id(value))


def _numpy(value: Any, where: str, path: set[int]) -> Any:
    if getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):
        return _convert(value.tolist(), where, path)
    if hasattr(value, "item"):
        item = value.item()
        if not _is_numpy(item) and item is not value:
            return _convert(item, where, path)
    raise _refuse(value, where)


def _key(key: Any, where: str) -> str | int | float | bool | None:
    if type(key) is str or isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int)):
        return key
    if isinstance(key, float) and math.isfinite(key):
        return key
    if _is_numpy(key) and hasattr(key, "item"):
        return _key(key.item(), where)
    raise _refuse(key, f"{where} key {key!r}", f"dict key of type {_type_name(key)} is not JSON")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``; raises ``NotJSON`` with a reason."""
    plain = _convert(value, "result", set())
    text = _encode(plain)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotJSON(f"result: a str contains a lone surrogate ({exc.reason})") from None
