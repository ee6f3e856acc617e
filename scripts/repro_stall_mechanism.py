#!/usr/bin/env python3
"""The mechanism behind Letta's 60 s stall, in seconds and deterministically (issue #26).

Run it with the Python of a Letta install (it imports only what Letta itself ships: openai,
httpx, anyio), against an OpenAI-compatible URL:

    ~/.cache/pytest-letta-compat/servers/0.16.2/bin/python scripts/repro_stall_mechanism.py http://127.0.0.1:PORT/v1

It does what Letta does around an archival insert, then what its next database connect does:

1. a new ``openai.AsyncOpenAI`` client makes one request and is dropped without ``close()``
   (Letta creates one per call: ``passage_manager.py``, ``openai_client.py``); its kept-alive
   connection stays open and idle;
2. the cyclic garbage collector frees it: the transport's finalizer closes the socket at once,
   while openai's ``AsyncHttpxClientWrapper.__del__`` only schedules ``aclose()`` for later;
3. a new connection is opened in the same step (asyncpg's ``create_connection``): it gets the
   freed file descriptor number and registers it with the event loop;
4. the scheduled ``aclose()`` closes the old transport, which removes "its" fd from the loop's
   epoll set: the new socket's. Its connect never completes (asyncpg waits out 60 s).

Prints one JSON line: {"result": "stalled" | "connected", "fd": N}. A server that answers
``Connection: close`` (our fake LLM's default) leaves no idle connection, so nothing stalls.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from urllib.parse import urlsplit

import openai


async def main(base_url: str, wait: float) -> dict:
    gc.disable()  # the collection below is the one that matters: keep the result deterministic
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-a-key", max_retries=0)
    await client.models.list()
    del client  # the client sits in reference cycles: only the cyclic collector frees it
    await asyncio.sleep(0.1)
    gc.collect()
    loop = asyncio.get_running_loop()
    watchdog = loop.call_later(wait, asyncio.current_task().cancel)
    url = urlsplit(base_url)
    try:
        # awaited directly: the socket is created and registered in this very step, before the
        # aclose() that the finalizer scheduled gets to run
        transport, _ = await loop.create_connection(asyncio.Protocol, url.hostname, url.port)
    except asyncio.CancelledError:
        return {"result": "stalled", "waited_s": wait}
    watchdog.cancel()
    fd = transport.get_extra_info("socket").fileno()
    transport.close()
    return {"result": "connected", "fd": fd}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps(asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))))
