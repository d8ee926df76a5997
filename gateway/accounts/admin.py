"""``chat-admin``: the operator's tool for accounts, on the gateways' Redis.

    chat-admin [--redis-url URL] list
    chat-admin [--redis-url URL] add NAME [--password-file PATH]
    chat-admin [--redis-url URL] passwd NAME [--password-file PATH]
    chat-admin [--redis-url URL] delete NAME

``--redis-url`` defaults to ``CHAT_REDIS_URL``, then to the gateway's default,
exactly as ``chat-gateway`` reads it. A password is read without echo from the
terminal (asked twice), or, when stdin is not a terminal or with
``--password-file`` (``-`` for stdin), as the first line of the file. ``passwd``
also unlocks the name (its failed attempts are forgotten); ``delete`` frees
the name for anyone and deletes the account's stored conversations (for both
sides) and read state, so whoever takes the name next reads none of them.

Live sessions **(ours)**: neither command kicks anyone. ``add`` for a name a
guest is using now leaves that session alone; from its next login the name
needs the password (the guest's token no longer resumes it). ``delete`` of a
logged-in account leaves the session logged in until it ends; the name is
then free.

Exit status: 0 done; 1 refused (bad name or password, an account that exists
or does not); 2 bad usage; 3 Redis out of reach or failing. Every failure is
one line on stderr, never a traceback, never a password.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from gateway.accounts.passwords import BadPassword
from gateway.accounts.store import (
    AccountError,
    AccountExists,
    AccountStore,
    NoSuchAccount,
    guard_redis,
)
from gateway.config import GatewayConfig
from gateway.conversations import forget_conversations
from gateway.redis.broker import BrokerUnavailable
from protocol.errors import ChatError, ProtocolError
from protocol.names import check_name

PROG = "chat-admin"
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_REDIS = 3
TIMEOUT_S = 5.0
DEFAULT_REDIS_URL = GatewayConfig(gateway_id="-").redis_url


class AdminError(ChatError):
    """A failure to report as one line, with the exit status to end with."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Manage ChatService accounts in the gateways' Redis.",
    )
    p.add_argument("--redis-url", default=environ.get("CHAT_REDIS_URL", DEFAULT_REDIS_URL),
                   help="redis:// or rediss:// URL, as for chat-gateway (env CHAT_REDIS_URL)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", allow_abbrev=False, help="list accounts: name and creation time")
    for command, text in (("add", "create an account"),
                          ("passwd", "set an account's password and unlock it")):
        c = sub.add_parser(command, allow_abbrev=False, help=text)
        c.add_argument("name")
        c.add_argument("--password-file", metavar="PATH",
                       help="read the password from the first line of PATH ('-': stdin)")
    d = sub.add_parser("delete", allow_abbrev=False, help="delete an account; the name is free")
    d.add_argument("name")
    return p


def redact(url: str) -> str:
    """``url`` without its password, fit for an error message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else "***@"
        return urlunsplit(parts._replace(netloc=user + host))
    except ValueError:
        return "(unparsable URL)"


def connect(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
    except ValueError as exc:
        raise AdminError(f"bad --redis-url {redact(url)}: {exc}", EXIT_USAGE) from None


def _first_line(text: str, source: str) -> str:
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise AdminError(f"no password in {source}")
    return line


def read_password(path: str | None, stdin: TextIO, name: str) -> str:
    """From ``path`` ('-': stdin), else the terminal without echo (twice), else stdin."""
    if path == "-" or (path is None and not stdin.isatty()):
        return _first_line(stdin.read(), "stdin")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                return _first_line(f.read(), path)
        except (OSError, UnicodeDecodeError) as exc:
            raise AdminError(f"cannot read the password file: {exc}") from None
    first = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Repeat it: ") != first:
        raise AdminError("the two passwords differ")
    return first


def _created(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args: argparse.Namespace, store: AccountStore, stdin: TextIO, stdout: TextIO) -> None:
    command: str = args.command
    if command == "list":
        for account in store.iter_accounts():
            stdout.write(f"{account.name}\t{_created(account.created_ms)}\n")
        return
    name = check_name(args.name)
    if command == "delete":
        if not store.delete(name):
            raise NoSuchAccount(f"{name} has no account")
        with guard_redis("conversation deletion"):
            forget_conversations(store.redis, name)
        stdout.write(f"deleted {name}\n")
        return
    # Refuse before asking for a password that could not be used.
    exists = store.exists(name)
    if command == "add" and exists:
        raise AccountExists(f"{name} already has an account")
    if command == "passwd" and not exists:
        raise NoSuchAccount(f"{name} has no account")
    password = read_password(args.password_file, stdin, name)
    if command == "add":
        account = store.create(name, password)
        stdout.write(f"created {account.name}\n")
    else:
        store.set_password(name, password)
        stdout.write(f"password set for {name}\n")


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         client: redis.Redis | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; ``client`` and the streams are for tests."""
    environ = os.environ if environ is None else environ
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser(environ).parse_args(argv)
    url: str = args.redis_url
    try:
        store = AccountStore(client if client is not None else connect(url))
        run(args, store, stdin, stdout)
    except AdminError as exc:
        stderr.write(f"{PROG}: {exc}\n")
        return exc.status
    except (AccountError, BadPassword) as exc:
        stderr.write(f"{PROG}: {exc}\n")
        return EXIT_REFUSED
    except ProtocolError as exc:
        stderr.write(f"{PROG}: bad name: {exc.message}\n")
        return EXIT_REFUSED
    except (BrokerUnavailable, redis.RedisError) as exc:
        stderr.write(f"{PROG}: Redis at {redact(url)} failed: {type(exc).__name__}: "
                     f"{_one_line(str(exc))}\n")
        return EXIT_REDIS
    except KeyboardInterrupt:
        stderr.write("\n")
        return 130
    return EXIT_OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
