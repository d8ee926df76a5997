"""Each Lua file reads its keys and arguments under the names, and in the order, of its
Python builder's fields (gateway/redis/scripts/): the one contract between the two."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest

from gateway.redis import keys, payloads, scripts

BUILDERS = [scripts.PublishMessage, scripts.SendDm, scripts.RenewEpoch, scripts.ReadHistory,
            scripts.Beat, scripts.Verdict, scripts.Heartbeat, scripts.ClaimInstance,
            scripts.Retire, scripts.DeadGateways, scripts.ForgetGateway, scripts.ReleaseReaper,
            scripts.DropGateway, scripts.UnregisterGateway, scripts.ClaimName,
            scripts.ReleaseName, scripts.MoveMember,
            scripts.Join, scripts.Leave, scripts.TakeRoomToken, scripts.RouteDm,
            scripts.StoreDm, scripts.MarkOwner]

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
        keys.room_members("r"), keys.room_channel("r"), "e", b"<", b">", 10, "SPUBLISH", 1000,
        5000, payloads.MESSAGE, 99).call()
    assert call.keys == ("{room:r}:seq", "{room:r}:epoch", "{room:r}:log", "ref",
                         "{room:r}:members", "{room:r}:ch")
    assert call.args == ("e", b"<", b">", 10, "SPUBLISH", 1000, 5000, b"M", 99)
    verdict = scripts.Verdict(keys.GATEWAYS, keys.GRACE, keys.PULSE, 5, 8000, "",
                              ("g1", "g2")).call()
    assert verdict.args == (5, 8000, "", 2, "g1", "g2")  # the count, then the gateways


def test_every_script_file_starts_with_the_cursors_and_its_includes() -> None:
    source = scripts.Verdict.SCRIPT.source.decode()
    assert source.index("local key, arg = cursor(KEYS), cursor(ARGV)") \
        < source.index("local function grace_open") < source.index("local gateways_key")
    source = scripts.SendDm.SCRIPT.source.decode()
    assert source.index("local key, arg = cursor(KEYS), cursor(ARGV)") \
        < source.index("local function too_late") < source.index("local ref_key")
