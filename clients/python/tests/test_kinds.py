"""The SDK's exception table against the service's own OpenAPI spec (docs/openapi.json).

Every error kind the spec lists has its class, with the status the spec gives it;
the SDK's only extra kinds are the session ones of the sessions API (issue 14),
until that API is in the spec, after which they must be there too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyexec_client as px
from pyexec_client._errors import STATUS

SPEC = json.loads((Path(__file__).resolve().parents[3] / "docs/openapi.json").read_text())
SESSION_KINDS = {"session_not_found", "session_busy"}


def spec_kinds() -> dict[str, int]:
    """Kind -> status, from the ErrorKind schema's description ("400: a, b. 401: c. ...")."""
    schema = SPEC["components"]["schemas"]["ErrorKind"]
    statuses: dict[str, int] = {}
    for status, kinds in re.findall(r"(\d{3}): ([a-z_, ]+)\.", schema["description"]):
        for kind in kinds.split(","):
            statuses[kind.strip()] = int(status)
    assert set(statuses) == set(schema["enum"]), "the description and the enum list the same kinds"
    return statuses


def test_every_spec_kind_has_its_class_and_status() -> None:
    for kind, status in spec_kinds().items():
        assert kind in px.KINDS, f"no exception class for {kind}"
        assert STATUS[kind] == status, kind
        assert px.KINDS[kind].__doc__ and kind in px.KINDS[kind].__doc__


def test_extra_kinds_are_only_the_session_ones() -> None:
    extra = set(px.KINDS) - set(spec_kinds())
    assert extra <= SESSION_KINDS, extra
    assert set(STATUS) == set(px.KINDS)


def test_families_follow_the_status() -> None:
    for kind, cls in px.KINDS.items():
        family = {4: px.RequestRefused, 5: px.ServiceUnavailable}.get(STATUS[kind] // 100)
        if STATUS[kind] == 422:
            family = px.ScriptError
        if STATUS[kind] == 500:
            family = px.Internal
        assert family is not None and issubclass(cls, family), (kind, cls)
        assert issubclass(cls, px.ApiError) and not issubclass(cls, px.TransportError)


def test_the_naming_scheme() -> None:
    for kind, cls in px.KINDS.items():
        camel = "".join(part.capitalize() for part in kind.split("_"))
        assert cls.__name__ in (camel, camel + "_"), (kind, cls.__name__)
        assert getattr(px, cls.__name__) is cls
