"""The registry container's health check: ``GET /healthz`` of the server in this container.

It reads the same settings as ``registry serve`` (``$REGISTRY_CONFIG``, then ``REGISTRY_*``)
to find the port and whether TLS is on. A certificate made by the registry's private CA is
verified with that CA (``ROOT/tls/ca.crt``); the operator's own certificate, which need not
name the loopback address, is not. Exit status 0 when healthy, 1 otherwise (what docker's
HEALTHCHECK expects).
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from registry.config import ConfigError, Settings, load_settings

TIMEOUT = 4.0


def health_url(settings: Settings) -> str:
    """The ``/healthz`` URL of the server ``settings`` describe, reached from inside."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_enabled else "http"
    return f"{scheme}://{host}:{settings.port}/healthz"


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Trust the private CA when the registry made its certificate, else skip verifying."""
    ca = settings.root / "tls" / "ca.crt"
    if settings.tls_cert is None and ca.exists():
        return ssl.create_default_context(cafile=str(ca))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def main() -> int:
    """Probe the server once; print why when it is not healthy."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    url = health_url(settings)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if settings.tls_enabled:
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(settings)))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=TIMEOUT) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"healthcheck: {url}: {exc.code} {exc.read()[:500].decode(errors='replace')}",
              file=sys.stderr)
    except (OSError, ssl.SSLError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
