"""Talking to an agent RPC port the way a peer does, for tests."""

from __future__ import annotations

import asyncio

from gossamer.catalog.sync_protocol import FrameDecoder, Message, encode


async def talk(addr: tuple[str, int], *messages: Message) -> list[Message]:
    """Send requests on one connection; the replies, in order."""
    reader, writer = await asyncio.open_connection(*addr)
    decoder, replies = FrameDecoder(), list[Message]()
    try:
        for sent, message in enumerate(messages, 1):
            writer.write(encode(message))
            while len(replies) < sent:
                data = await asyncio.wait_for(reader.read(65536), 5)
                assert data, "server closed the connection"
                replies += decoder.feed(data)
    finally:
        writer.close()
    return replies
