"""serf's files in the data dir after a crash or under a failing disk (the crash walk).

- A serf killed while the disk is read-only (or its state dir otherwise
  unwritable) must be started again once it can be, and say why meanwhile:
  its supervisor once died on the OSError of writing `rpc.json`, silently,
  and the agent ran on without gossip for good.
- serf rewrites `local.keyring` in place on key rotation; a crash or a full
  disk can leave it empty or cut short. The agent then must not start with
  serf's bare "Failed to decode keyring file", but name the file and say what
  to do with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

from gossamer.gossip.errors import SerfError
from gossamer.gossip.keyring import KeyringFileError, check_keyring, generate_key
from gossamer.gossip.process import SerfFatalError, SerfProcess
from gossamer.gossip.serf_launch import SerfSettings
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async

pytestmark = pytest.mark.skipif(shutil.which("serf") is None, reason="serf is not installed")


def _settings(tmp_path: Path, encrypt: str | None = None) -> SerfSettings:
    ip = "127.0.0.1"
    return SerfSettings(
        node="crash1", bind=ip, port=free_port(ip), state_dir=tmp_path / "serf", encrypt=encrypt
    )


async def test_a_serf_that_cannot_be_restarted_yet_is_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serf = SerfProcess(_settings(tmp_path))
    await serf.start()
    try:
        rpc_conf = tmp_path / "serf" / "rpc.json"
        rpc_conf.unlink()
        rpc_conf.mkdir()  # writing it again fails, as on a disk gone read-only
        first = serf.pid
        assert first is not None
        with caplog.at_level(logging.ERROR, logger="gossamer.serf"):
            os.kill(first, signal.SIGKILL)
            await eventually_async(
                lambda: "cannot write serf's files" in caplog.text, 10,
            )  # fmt: skip
        assert str(rpc_conf) in caplog.text
        rpc_conf.rmdir()  # the disk is back
        await eventually_async(lambda: serf.pid not in (None, first) and serf.restarts == 1, 15)
        await eventually_async(serf.client.members, 10, retry_on=(SerfError,))
    finally:
        await serf.stop(leave=False)


@pytest.mark.parametrize("text", ["", '["abc', "[]", '["not base64!"]'])
def test_an_unreadable_keyring_is_named_with_what_to_do(tmp_path: Path, text: str) -> None:
    keyring = tmp_path / "local.keyring"
    keyring.write_text(text)
    with pytest.raises(KeyringFileError) as caught:
        check_keyring(keyring)
    message = str(caught.value)
    assert str(keyring) in message
    assert "delete it" in message


def test_a_good_keyring_or_none_passes(tmp_path: Path) -> None:
    keyring = tmp_path / "local.keyring"
    check_keyring(keyring)  # none yet: seeded from `encrypt`
    keyring.write_text(f'["{generate_key()}", "{generate_key()}"]')
    check_keyring(keyring)


async def test_serf_is_not_started_on_an_empty_keyring(tmp_path: Path) -> None:
    settings = _settings(tmp_path, encrypt=generate_key())
    settings.state_dir.mkdir()
    settings.keyring_file.write_text("")  # a crash during serf's rewrite of it
    serf = SerfProcess(settings)
    with pytest.raises(SerfFatalError) as caught:
        await serf.start()
    assert str(settings.keyring_file) in str(caught.value)
    assert serf.pid is None
