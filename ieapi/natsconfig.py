"""The NATS server's authorization for LLO Docker: who may publish and subscribe where.

Security is the server's job, not a convention of the clients:

- the hooks' identity may publish requests to every IE (`<prefix>.>`) and receive answers on
  its inboxes (`_INBOX.>`);
- each IE's identity may subscribe ONLY to its own subjects (`<prefix>.<ie>.*`), may publish
  nothing at all, and may answer only the requests it received (`allow_responses`, one answer
  per request). It cannot read another IE's requests, answer them, or read any answer.

`authorization(...)` returns that block as data; `python -m ieapi.natsconfig` prints a whole
server configuration (NATS configuration files accept JSON) for the IEs named on the command
line; the kustomize component in `metacontroller/nats/` is the same shape.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ieapi.natswire import DEFAULT_SUBJECT_PREFIX, ie_subjects

INBOXES = "_INBOX.>"


@dataclass(frozen=True)
class Credential:
    """How one identity logs in: an nkey public key, or a user with a password (plain or a
    bcrypt hash, `$2a$...`, as `nats server passwd` makes it)."""

    nkey: str | None = None
    user: str | None = None
    password: str | None = None

    def entry(self) -> dict[str, Any]:
        if self.nkey:
            return {"nkey": self.nkey}
        return {"user": self.user, "password": self.password}


def hooks_user(cred: Credential, prefix: str = DEFAULT_SUBJECT_PREFIX) -> dict[str, Any]:
    return {**cred.entry(), "permissions": {
        "publish": {"allow": [f"{prefix}.>"]},
        "subscribe": {"allow": [INBOXES]},
    }}


def ie_user(die_name: str, cred: Credential,
            prefix: str = DEFAULT_SUBJECT_PREFIX) -> dict[str, Any]:
    return {**cred.entry(), "permissions": {
        "subscribe": {"allow": [ie_subjects(prefix, die_name)]},
        "publish": {"deny": [">"]},
        "allow_responses": {"max": 1},
    }}


def authorization(hooks: Credential, ies: Mapping[str, Credential],
                  prefix: str = DEFAULT_SUBJECT_PREFIX) -> dict[str, Any]:
    users = [hooks_user(hooks, prefix)]
    users += [ie_user(name, cred, prefix) for name, cred in sorted(ies.items())]
    return {"users": users}


def server_config(hooks: Credential, ies: Mapping[str, Credential], *,
                  listen: str = "0.0.0.0:4222", monitor: str | None = "0.0.0.0:8222",
                  tls_cert: str | None = None, tls_key: str | None = None,
                  prefix: str = DEFAULT_SUBJECT_PREFIX) -> dict[str, Any]:
    config: dict[str, Any] = {"listen": listen,
                              "authorization": authorization(hooks, ies, prefix)}
    if monitor:
        config["http"] = monitor
    if tls_cert and tls_key:
        config["tls"] = {"cert_file": tls_cert, "key_file": tls_key}
    return config


USAGE = """\
usage: python -m ieapi.natsconfig HOOKS_NKEY [DIE_NAME=IE_NKEY ...]

Prints a NATS server configuration (JSON) that lets the hooks (public user nkey HOOKS_NKEY)
request every IE and each DIE_NAME's agent (public user nkey IE_NKEY) serve only its own
subjects. Make nkeys with `python -m ieapi.natsconfig --new-nkey` (prints seed and public key).
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--new-nkey"]:
        from ieapi.natsauth import new_user_nkey  # noqa: PLC0415

        key = new_user_nkey()
        print(f"seed:   {key.seed}\npublic: {key.public_key}")
        return 0
    if not args or args[0] in ("-h", "--help") or any("=" not in a for a in args[1:]):
        print(USAGE, file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    ies = {name: Credential(nkey=key) for name, key in (a.split("=", 1) for a in args[1:])}
    print(json.dumps(server_config(Credential(nkey=args[0]), ies), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
