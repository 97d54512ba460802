"""`llo-docker logs|describe` (also installed as `kubectl-llo`, so `kubectl llo logs ...`).

Exit codes: 0 done; 1 Kubernetes said no or not found; 2 usage; 3 not placed yet; 4 no token
(Secret forbidden, absent or without the key); 5 the IE API cannot be reached or refused;
130 interrupted (Ctrl-C while following).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llocli import describe, locate
from llocli.kube import ForbiddenError, Kubectl, KubeError, NotFoundError
from llocli.logs import IEError, LogRequest, stream

EXIT_KUBE, EXIT_NOT_PLACED, EXIT_TOKEN, EXIT_IE = 1, 3, 4, 5

RBAC_HINT = ("reading the IE token needs `get` on Secret {ns}/{name} (README: "
             "\"Troubleshooting with llo-docker\"); or pass --token-file")


class CommandError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parser() -> argparse.ArgumentParser:
    prog = "kubectl llo" if Path(sys.argv[0]).name == "kubectl-llo" else "llo-docker"
    top = argparse.ArgumentParser(
        prog=prog, description="Logs and state of LLO Docker components (ServiceComponentDocker)"
        " without a shell on the edge box. Kubernetes is reached through kubectl.")
    top.add_argument("--kubeconfig", help="kubeconfig file (default: kubectl's)")
    top.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("scd", metavar="SCD", help="ServiceComponentDocker name")
        p.add_argument("-n", "--namespace", help="its namespace (default: the context's)")

    logs = sub.add_parser("logs", help="print or follow the container's output")
    common(logs)
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    logs.add_argument("--since", metavar="WHEN", help="only output after WHEN: 90s, 5m, 2h or "
                      "an RFC 3339 time")
    logs.add_argument("--timestamps", action="store_true", help="prefix lines with their time")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new output until the container stops (Ctrl-C ends)")
    logs.add_argument("--tokens-namespace", default=locate.TOKENS_NAMESPACE,
                      help="namespace of the IE tokens Secret (default: %(default)s)")
    logs.add_argument("--tokens-secret", default=locate.TOKENS_SECRET,
                      help="IE tokens Secret (default: %(default)s)")
    logs.add_argument("--token-file", type=Path,
                      help="read the IE token from this file instead of the Secret")
    logs.add_argument("--ca-bundle", type=Path, help="CA of an https:// IE API")
    describe_p = sub.add_parser("describe", help="phase, conditions, placement, pull "
                                "progress and the last failure's output")
    common(describe_p)
    return top


def _kubectl(args: argparse.Namespace) -> Kubectl:
    flags = []
    if args.kubeconfig:
        flags.append(f"--kubeconfig={args.kubeconfig}")
    if args.context:
        flags.append(f"--context={args.context}")
    return Kubectl(binary=os.environ.get("LLO_KUBECTL", "kubectl"), flags=tuple(flags))


def _get_scd(kube: Kubectl, namespace: str, name: str) -> locate.JSON:
    try:
        return kube.get(locate.SCD_PATH.format(namespace=namespace, name=name))
    except NotFoundError as exc:
        raise CommandError(f"no ServiceComponentDocker {namespace}/{name}", EXIT_KUBE) from exc
    except KubeError as exc:
        raise CommandError(f"cannot read ServiceComponentDocker {namespace}/{name}: {exc}",
                           EXIT_KUBE) from exc


def _get_die(kube: Kubectl, name: str) -> locate.JSON | None:
    """The DIE, or None when it is gone or unreadable (the placement's record then serves)."""
    try:
        return kube.get(locate.DIE_PATH.format(name=name))
    except KubeError:
        return None


def _token(kube: Kubectl, args: argparse.Namespace, target: locate.Target) -> str:
    if args.token_file is not None:
        path: Path = args.token_file
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise CommandError(f"--token-file: {exc}", EXIT_TOKEN) from exc
    ns, name = args.tokens_namespace, args.tokens_secret
    hint = RBAC_HINT.format(ns=ns, name=name)
    try:
        secret = kube.get(locate.SECRET_PATH.format(namespace=ns, name=name))
    except ForbiddenError as exc:
        raise CommandError(f"no permission to read the IE token: {exc}; {hint}",
                           EXIT_TOKEN) from exc
    except NotFoundError as exc:
        raise CommandError(f"no Secret {ns}/{name} holding the IE tokens (README: Install, "
                           "step 4); or pass --token-file", EXIT_TOKEN) from exc
    except KubeError as exc:
        raise CommandError(f"cannot read Secret {ns}/{name}: {exc}", EXIT_TOKEN) from exc
    try:
        return locate.token_from_secret(secret, target.token_key)
    except locate.TokenError as exc:
        raise CommandError(str(exc), EXIT_TOKEN) from exc


def run_logs(args: argparse.Namespace) -> int:
    kube = _kubectl(args)
    namespace = args.namespace or kube.current_namespace()
    try:
        scd, placement = locate.placement_of(_get_scd(kube, namespace, args.scd))
    except locate.NotPlacedError as exc:
        raise CommandError(str(exc), EXIT_NOT_PLACED) from exc
    target = locate.target(scd, placement, _get_die(kube, placement.ie))
    token = _token(kube, args, target)
    query = LogRequest(tail=args.tail, since=args.since, timestamps=args.timestamps,
                       follow=args.follow)
    out = sys.stdout.buffer
    try:
        for chunk in stream(target, token, query, args.ca_bundle):
            out.write(chunk)
            out.flush()
    except IEError as exc:
        raise CommandError(str(exc), EXIT_IE) from exc
    return 0


def run_describe(args: argparse.Namespace) -> int:
    kube = _kubectl(args)
    namespace = args.namespace or kube.current_namespace()
    sys.stdout.write(describe.render(_get_scd(kube, namespace, args.scd)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "tail", None) is not None and args.tail < 0:
        parser().error("--tail must be 0 or more")
    try:
        return run_logs(args) if args.command == "logs" else run_describe(args)
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `| head`: the reader is done
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
