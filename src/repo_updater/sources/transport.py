"""``AiohttpTransport``: the wire under ``HostClient``'s ``httpx.AsyncClient``.

httpx's own transport (httpcore on anyio) costs 3-5x more CPU per request than aiohttp's
client on the same listing (bench/results/host_latency.md), and the project already runs
aiohttp (the emulator, the API). Everything above the wire stays httpx: ``HostClient``'s
same-origin checks, redirects, retries, classifiers and token redaction see the same
``httpx.Request`` and ``httpx.Response``, and tests still inject ``httpx.MockTransport``.

What this transport keeps exactly as httpx's does, because ``HostClient`` decides on it:

- errors map onto httpx's exceptions by what is known about the request: it surely never left
  only when the connection could not be made (``ConnectError``, ``ConnectTimeout``: retried
  even for a write); a timeout waiting for the answer is ``ReadTimeout``, a dropped connection
  or a cut body ``ReadError`` (retried only when idempotent);
- the URL is sent as httpx encoded it (no re-quoting: GitLab's ``group%2Fproject``);
- no redirect is followed and no body is decompressed here (httpx decodes ``Content-Encoding``
  as it always did);
- connect and read timeouts come from the request (``HostClient.timeout``);
- TLS verification uses httpx's default context (certifi, ``SSL_CERT_FILE``); proxies from the
  environment are still httpx's (``AsyncClient`` mounts its own transport for them).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import yarl
from multidict import CIMultiDict


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=httpx.create_ssl_context()
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
        )
        body = await request.aread()
        try:
            async with self._get_session().request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as response:
                content = await response.read()
                raw_headers = [(k, v) for k, v in response.raw_headers]
                status, reason = response.status, response.reason
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.InvalidURL as exc:
            raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", errors="replace")
        return httpx.Response(
            status,
            headers=raw_headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
