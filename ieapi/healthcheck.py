"""`python -m ieapi.healthcheck`: exit 0 when /healthz answers (the image's HEALTHCHECK).

Derives the port from IEAPI_BIND, so the check follows the server wherever it is bound.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("IEAPI_BIND", "0.0.0.0:8081").rsplit(":", 1)[-1]
    scheme, context = "http", None
    if os.environ.get("IEAPI_TLS_CERT_FILE", "").strip():
        # Liveness of our own process on loopback: the certificate names the IE, not 127.0.0.1.
        scheme, context = "https", ssl._create_unverified_context()  # noqa: S323
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=2,  # noqa: S310
                                    context=context) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
