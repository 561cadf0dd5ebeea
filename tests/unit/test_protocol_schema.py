"""The protocol's JSON Schema (docs/protocol.schema.json, made from orchestrator/protocol.py) is
published as generated, and the browser's types (ui/lib/protocol.ts) and the specification
(docs/protocol.md) name the same messages and fields as it does."""

from __future__ import annotations

import json
from typing import Any, get_args

from orchestrator.grounding import DeclineReason
from orchestrator.protocol import SCHEMA_PATH, DeclineReasonName, ErrorCode, json_schema, schema_text
from tests.contracts import (
    REPO,
    UI_PROTOCOL,
    doc_message_table,
    ts_interface,
    ts_string_set,
    ts_string_union,
    ts_union,
)

DEFS: dict[str, Any] = json_schema()["$defs"]


def _messages(union: str) -> dict[str, dict[str, bool]]:
    """Each message type of a union in the schema → {field: optional} (`type` left out)."""
    out = {}
    for type_, ref in DEFS[union]["discriminator"]["mapping"].items():
        definition = DEFS[ref.rsplit("/", 1)[1]]
        required = set(definition.get("required", []))
        out[type_] = {f: f not in required for f in definition["properties"] if f != "type"}
    return out


SERVER = _messages("ServerEvent")
CLIENT = _messages("ClientMessage")


def test_the_published_schema_is_the_generated_one() -> None:
    published = (REPO / SCHEMA_PATH).read_text(encoding="utf-8")
    assert published == schema_text(), f"{SCHEMA_PATH} is out of date: run `make protocol-schema`"


def test_every_server_event_and_client_message_is_in_the_schema() -> None:
    assert set(SERVER) == {
        "session.ready",
        "session.updated",
        "turn.started",
        "transcript.partial",
        "transcript.final",
        "sources",
        "answer.delta",
        "answer.done",
        "audio.clear",
        "turn.done",
        "error",
    }
    assert set(CLIENT) == {"session.start", "session.update", "turn.start", "turn.end", "turn.cancel", "text"}
    assert json.loads(json.dumps(json_schema()))  # plain JSON, no Python objects left in it


def _drift(ours: dict[str, dict[str, bool]], theirs: dict[str, dict[str, bool]], where: str) -> list[str]:
    problems = []
    for type_ in sorted(set(ours) ^ set(theirs)):
        problems.append(
            f"{type_}: {'missing from' if type_ in ours else 'unknown to the schema, in'} {where}"
        )
    for type_ in sorted(set(ours) & set(theirs)):
        for field in sorted(set(ours[type_]) ^ set(theirs[type_])):
            side = "missing from" if field in ours[type_] else "not in the schema, but in"
            problems.append(f"{type_}.{field}: {side} {where}")
    return problems


def test_the_ui_types_name_every_event_and_field_of_the_schema() -> None:
    where = str(UI_PROTOCOL.relative_to(REPO))
    problems = _drift(SERVER, ts_union("ServerEvent"), where) + _drift(
        CLIENT, ts_union("ClientMessage"), where
    )
    assert not problems, "\n".join(problems)
    assert ts_string_set("SERVER_TYPES") == set(SERVER), f"SERVER_TYPES in {where} is not every server event"


def test_the_ui_never_relies_on_a_field_the_server_may_leave_out() -> None:
    # Server → client: a field the schema lets the server omit must be optional in TypeScript.
    # Client → server: a field the server requires must be required in TypeScript.
    ui_server, ui_client = ts_union("ServerEvent"), ts_union("ClientMessage")
    problems = [
        f"{t}.{f} is optional in the schema but required in ui/lib/protocol.ts"
        for t, fields in SERVER.items()
        for f, optional in fields.items()
        if optional and not ui_server[t][f]
    ] + [
        f"{t}.{f} is required by the server but optional in ui/lib/protocol.ts"
        for t, fields in CLIENT.items()
        for f, optional in fields.items()
        if not optional and ui_client[t][f]
    ]
    citation = DEFS["Citation"]
    source = ts_interface("Source")
    assert set(source) == set(citation["properties"])
    problems += [
        f"Source.{f} may be left out but is required in ui/lib/protocol.ts"
        for f in citation["properties"]
        if f not in citation["required"] and not source[f]
    ]
    assert not problems, "\n".join(problems)


def test_the_ui_knows_the_codes_and_reasons_the_server_sends() -> None:
    assert ts_string_union("DeclineReason") == set(get_args(DeclineReasonName))
    assert ts_string_union("TurnOutcome") == set(DEFS["TurnDone"]["properties"]["outcome"]["enum"])
    # `forbidden` is HTTP-only (a page of another site): never a voice event.
    assert ts_string_union("ErrorCode") == {c.value for c in ErrorCode} - {"forbidden"}


def test_the_decline_reasons_on_the_wire_are_the_pipelines() -> None:
    assert set(get_args(DeclineReasonName)) == {r.value for r in DeclineReason}


def test_the_specification_lists_the_schemas_messages_and_fields() -> None:
    problems = _drift(SERVER, doc_message_table("Server → client"), "docs/protocol.md (Server → client)")
    problems += _drift(CLIENT, doc_message_table("Client → server"), "docs/protocol.md (Client → server)")
    # Client fields: `name?` in the table exactly when the server lets a client leave it out.
    documented = doc_message_table("Client → server")
    problems += [
        f"{t}.{f}: optional is {optional} in the schema, not in docs/protocol.md"
        for t, fields in CLIENT.items()
        for f, optional in fields.items()
        if documented.get(t, {}).get(f, optional) != optional
    ]
    assert not problems, "\n".join(problems)
