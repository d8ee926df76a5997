"""chat-admin: in process on fakeredis for its parsing and password input, and as a
subprocess (the installed console script) against a real redis-server."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
import redis

from gateway import admin
from gateway.accounts import AccountStore
from gateway.passwords import PasswordHasher
from tests.conftest import installed_program
from tests.support.redis_server import RedisServer, free_port

PW = "operator's choice 1"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_in_process(client: redis.Redis, *argv: str, stdin: io.StringIO | None = None,
                   environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = admin.main(list(argv), environ=environ or {}, client=client,
                        stdin=stdin or io.StringIO(""), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- in process


def test_add_reads_the_terminal_twice_without_echo(
        fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PW

    monkeypatch.setattr(admin.getpass, "getpass", fake_getpass)
    status, out, err = run_in_process(fake_redis, "add", "Alice", stdin=Terminal(""))
    assert (status, out, err) == (0, "created Alice\n", "")
    assert prompts == ["Password for Alice: ", "Repeat it: "]
    assert AccountStore(fake_redis).verify("alice", PW)


def test_add_refuses_two_different_passwords(
        fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([PW, PW + "x"])
    monkeypatch.setattr(admin.getpass, "getpass", lambda prompt="": next(answers))
    status, _, err = run_in_process(fake_redis, "add", "Alice", stdin=Terminal(""))
    assert status == 1 and err == "chat-admin: the two passwords differ\n"
    assert not fake_redis.exists("{user:allce}:account")


def test_password_is_the_first_line_spaces_kept(fake_redis: fakeredis.FakeRedis) -> None:
    status, _, _ = run_in_process(fake_redis, "add", "Alice",
                                  stdin=io.StringIO("  spaced out  \r\nsecond line\n"))
    assert status == 0
    assert AccountStore(fake_redis).verify("Alice", "  spaced out  ")


@pytest.mark.parametrize("argv", [
    ["--redis", "redis://x", "list"],  # abbreviation of --redis-url
    ["add", "Alice", "--password", "f"],  # abbreviation of --password-file
    ["frobnicate"],
    [],
    ["add"],
])
def test_usage_errors_exit_2(fake_redis: fakeredis.FakeRedis, argv: list[str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        admin.main(argv, environ={}, client=fake_redis)
    assert info.value.code == 2
    assert "usage: chat-admin" in capsys.readouterr().err


def test_redis_url_from_flag_then_environment_then_default() -> None:
    parse = admin.build_parser
    assert parse({}).parse_args(["list"]).redis_url == "redis://localhost:6379/0"
    env = {"CHAT_REDIS_URL": "redis://env:1/0"}
    assert parse(env).parse_args(["list"]).redis_url == "redis://env:1/0"
    assert parse(env).parse_args(["--redis-url", "redis://flag:2/0", "list"]).redis_url \
        == "redis://flag:2/0"


def test_redact_hides_the_password() -> None:
    assert admin.redact("redis://:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert admin.redact("rediss://user:s3cret@host/0") == "rediss://user:***@host/0"
    assert admin.redact("redis://host:6379/0") == "redis://host:6379/0"


# ------------------------------------------------------------ as a subprocess


RunAdmin = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def chat_admin(redis_server: RedisServer) -> RunAdmin:
    program = installed_program("chat-admin")
    assert program, "chat-admin is not installed: pip install -e ."

    def run(*argv: str, input: str | None = "", url: str | None = redis_server.url,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        args = [program, *(["--redis-url", url] if url else []), *argv]
        environ = {k: v for k, v in os.environ.items() if k != "CHAT_REDIS_URL"}
        environ.update(env or {})
        return subprocess.run(args, input=input, capture_output=True, text=True,
                              timeout=60, env=environ, check=False)

    return run


def store_on(server: RedisServer) -> AccountStore:
    return AccountStore(server.client(), PasswordHasher())


def test_add_list_passwd_delete(chat_admin: RunAdmin, redis_server: RedisServer,
                                tmp_path: Path) -> None:
    store = store_on(redis_server)
    pw_file = tmp_path / "pw"
    pw_file.write_text(PW + "\n", encoding="utf-8")

    done = chat_admin("add", "Alice", "--password-file", str(pw_file))
    assert (done.returncode, done.stdout, done.stderr) == (0, "created Alice\n", "")
    assert store.verify("alice", PW)

    done = chat_admin("add", "Bob", input="bob's password\n")  # stdin is a pipe
    assert done.returncode == 0, done.stderr
    assert store.verify("Bob", "bob's password")

    done = chat_admin("list")
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert [line.split("\t")[0] for line in lines] == ["Alice", "Bob"]
    assert all(line.split("\t")[1].endswith("Z") for line in lines)

    done = chat_admin("passwd", "alice", "--password-file", "-", input="a brand new one\n")
    assert (done.returncode, done.stdout) == (0, "password set for alice\n"), done.stderr
    assert store.verify("Alice", "a brand new one") and not store.verify("Alice", PW)

    done = chat_admin("delete", "ALICE")
    assert (done.returncode, done.stdout) == (0, "deleted ALICE\n"), done.stderr
    assert not store.exists("Alice")
    assert chat_admin("list").stdout.splitlines()[0].startswith("Bob\t")


def test_delete_frees_the_name_and_unlocks_it(chat_admin: RunAdmin,
                                              redis_server: RedisServer) -> None:
    client = redis_server.client()
    assert chat_admin("add", "Alice", input=PW).returncode == 0
    client.set("{user:allce}:authfail", 5, px=300_000)
    assert chat_admin("delete", "alice").returncode == 0
    assert not client.exists("{user:allce}:authfail", "{user:allce}:account")
    assert chat_admin("add", "alice", input="someone else's\n").returncode == 0
    account = store_on(redis_server).get("ALICE")
    assert account is not None and account.name == "alice"


def test_passwd_unlocks_a_locked_name(chat_admin: RunAdmin, redis_server: RedisServer) -> None:
    client = redis_server.client()
    assert chat_admin("add", "Alice", input=PW).returncode == 0
    client.set("{user:allce}:authfail", 5, px=300_000)
    assert chat_admin("passwd", "Alice", input="a fresh password\n").returncode == 0
    assert not client.exists("{user:allce}:authfail")


def test_list_of_no_accounts(chat_admin: RunAdmin) -> None:
    done = chat_admin("list")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_redis_url_from_the_environment(chat_admin: RunAdmin, redis_server: RedisServer) -> None:
    done = chat_admin("add", "Alice", input=PW, url=None,
                      env={"CHAT_REDIS_URL": redis_server.url})
    assert done.returncode == 0, done.stderr
    assert store_on(redis_server).exists("Alice")


@pytest.mark.parametrize(("argv", "stdin", "message"), [
    (["add", "bad name"], PW, "chat-admin: bad name: name must be 1 to"),
    (["add", "x" * 40], PW, "chat-admin: bad name:"),
    (["passwd", "Nobody"], PW, "chat-admin: Nobody has no account\n"),
    (["delete", "Nobody"], "", "chat-admin: Nobody has no account\n"),
    (["add", "Carol"], "short\n", "chat-admin: password must be 8 to 1024 characters"),
    (["add", "Carol"], "", "chat-admin: no password in stdin\n"),
    (["add", "Carol", "--password-file", "/nonexistent/pw"], "",
     "chat-admin: cannot read the password file:"),
])
def test_refusals_are_one_line_exit_1(chat_admin: RunAdmin, argv: list[str], stdin: str,
                                      message: str) -> None:
    done = chat_admin(*argv, input=stdin)
    assert done.returncode == 1
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert "short" not in done.stderr


def test_add_refuses_an_existing_account_before_asking(chat_admin: RunAdmin,
                                                       redis_server: RedisServer) -> None:
    assert chat_admin("add", "Alice", input=PW).returncode == 0
    done = chat_admin("add", "alice", input="a different password\n")
    assert (done.returncode, done.stderr) == (1, "chat-admin: alice already has an account\n")
    assert store_on(redis_server).verify("Alice", PW)


def test_unreachable_redis_is_one_line_exit_3(chat_admin: RunAdmin) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    for argv in (["list"], ["add", "Alice"], ["delete", "Alice"]):
        done = chat_admin(*argv, input=PW, url=url)
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("chat-admin: Redis at redis://***@127.0.0.1:")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "s3cret-pw" not in done.stderr and PW not in done.stderr


def test_bad_url_is_a_usage_error(chat_admin: RunAdmin) -> None:
    done = chat_admin("list", url="http://nowhere/")
    assert done.returncode == 2
    assert done.stderr.startswith("chat-admin: bad --redis-url") and "Traceback" not in done.stderr
