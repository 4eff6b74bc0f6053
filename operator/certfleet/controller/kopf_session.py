"""kopf's own connection to the API server, its connections bounded.

kopf's built-in session has no limit on connections (aiohttp's ``limit=0``): at a cold start
the objects' workers patch at once, and each patch in flight opened a TLS connection of its
own, with a 256 KiB buffer and a handshake that the busy event loop made slow. At N=300 the
operator held 257 of them; at N=1,000 a cold start now and then peaked at 700 MiB, with
hundreds of patches failing to connect within kopf's 5 s and retried. The same credentials
go into a session that opens at most ``KOPF_CONNECTIONS``: kopf's three watches (its CRD
observer, ManagedCertificates, CloudHosts) hold one each, and its patches and the events it
posts take turns on the rest. Fewer in flight also left kopf's loop free sooner for a new
resource's event (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import kopf

# Measured at a cold start of 1,000 (8, 16, 32, 64): 16 gave the new resource's Ready
# soonest with no failed connection; 3 of them are the watches'.
KOPF_CONNECTIONS = 16


async def bounded_session(**kwargs: Any) -> kopf.AiohttpSession | None:
    """A login handler: the credentials kopf would find (the kubeconfig or the pod's service
    account), in a session of at most KOPF_CONNECTIONS connections. Made in kopf's event
    loop, as aiohttp needs; kopf closes it when it logs in again."""
    credentials = kopf.login_via_client(**kwargs)
    if credentials is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS, ssl=credentials.as_ssl_context()),
        headers=credentials.as_http_headers(),
        proxy=credentials.proxy_url,
        trust_env=credentials.trust_env,
    )
    return kopf.AiohttpSession(
        server=credentials.server,
        default_namespace=credentials.default_namespace,
        expiration=credentials.expiration,
        priority=credentials.priority,
        aiohttp_session=session,
    )
