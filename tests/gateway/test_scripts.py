"""Each Lua file reads its keys and arguments under the names, and in the order, of its
Python builder's fields (gateway/redis/scripts/): the one contract between the two."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest

from gateway.redis import keys, payloads, scripts

BUILDERS = [scripts.PublishMessage, scripts.SendDm, scripts.RenewEpoch, scripts.ReadHistory,
            scripts.Heartbeat, scripts.DeadGateways, scripts.Who, scripts.ClaimName,
            scripts.ReleaseName, scripts.Join, scripts.Leave, scripts.Reap,
            scripts.RouteDm, scripts.StoreDm, scripts.MarkOwner]

_READ = re.compile(r"^(tonumber\()?(key|arg)\(\)\)?( == '1')?$")


def lua_reads(name: str) -> list[tuple[str, str]]:
    """(local name, 'key' or 'arg') of every ``local a, b = key(), arg()`` line, in order."""
    body = (resources.files("gateway.redis") / "lua" / f"{name}.lua").read_text()
    reads: list[tuple[str, str]] = []
    for line in body.splitlines():
        found = re.match(r"\s*local ([\w, ]+) =\s*(.*)$", line)
        if not found:
            continue
        names = [n.strip() for n in found.group(1).split(",")]
        values = [v.strip() for v in re.split(r",\s*(?![^()]*\))", found.group(2))]
        if len(names) == len(values) and all(_READ.match(v) for v in values):
            reads += [(n, "key" if "key()" in v else "arg") for n, v in zip(names, values,
                                                                             strict=True)]
    return reads


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_the_script_reads_what_its_builder_names_in_the_same_order(builder: type) -> None:
    fields = [f for f in dataclasses.fields(builder) if f.name != "SCRIPT"]
    scalar = [f.name for f in fields if "tuple" not in str(f.type)]
    reads = [name for name, _ in lua_reads(builder.SCRIPT.name)]  # type: ignore[attr-defined]
    assert [n for n in reads if n in scalar] == scalar
    for f in fields:
        if "key" in f.metadata:
            assert (f.name, "key") in lua_reads(builder.SCRIPT.name)  # type: ignore[attr-defined]


def test_a_builder_lays_out_keys_then_arguments_as_the_script_reads_them() -> None:
    call = scripts.PublishMessage(
        keys.room_seq("r"), keys.room_epoch("r"), keys.room_log("r"), "ref",
        keys.room_members("r"), "e", b"<", b">", 10, keys.room_channel("r"), 1000, 5000,
        payloads.MESSAGE, 99).call()
    assert call.keys == ("{room:r}:seq", "{room:r}:epoch", "{room:r}:log", "ref",
                         "{room:r}:members")
    assert call.args == ("e", b"<", b">", 10, "{room:r}:ch", 1000, 5000, b"M", 99)
    claim = scripts.ClaimName("u", "g", "n", "gr", "p", "m", "ur", "hm", display="Bob",
                              rooms=(scripts.RoomOfName("k1", "r1"),),
                              account_key="acct").call()
    assert claim.keys[-2:] == ("k1", "acct")
    assert claim.args[-2:] == (1, "r1")  # the room count, then the room


def test_every_script_file_starts_with_the_cursors_and_its_includes() -> None:
    source = scripts.SendDm.SCRIPT.source.decode()
    assert source.index("local key, arg = cursor(KEYS), cursor(ARGV)") \
        < source.index("local function grace_open") < source.index("local function too_late") \
        < source.index("local user_key")
