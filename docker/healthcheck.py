"""Container health probe: exit 0 when the service answers ``GET /readyz`` with a 2xx, else 1.

Readiness, not liveness: the container is healthy once every collection is loaded (``/readyz`` is 503
while they load or when one failed), so nothing waiting on "healthy" gets a server that cannot search.
``/readyz`` needs no API key (without one it tells only the state). Standard library only (urllib), so
it runs in the image without curl or wget. It asks ``http://127.0.0.1:$ARCSEARCH_PORT/readyz`` (port 8000
by default) and ignores any HTTP proxy set in the environment: the probe must reach the server inside
this container, never a proxy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8000"
DEFAULT_TIMEOUT_S = 4.0


def probe(url: str, *, timeout_s: float) -> tuple[bool, str]:
    """Return (healthy, reason) for one GET of ``url``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)
    return 200 <= status < 300, f"HTTP {status}"


def main() -> int:
    port = os.environ.get("ARCSEARCH_PORT", DEFAULT_PORT)
    timeout_s = float(os.environ.get("ARCSEARCH_HEALTHCHECK_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    url = f"http://127.0.0.1:{port}/readyz"
    healthy, reason = probe(url, timeout_s=timeout_s)
    print(f"{'healthy' if healthy else 'unhealthy'}: {url}: {reason}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
