"""Keys a later release may add to the ACL and CA maps: kept and passed on, never read. Pure.

Why keep them: the ACL and CA maps refused every key of a kind this version
does not read, on every anti-entropy round (the peer offers it again, its
digest never agrees, a warning each time), and the entry did not travel on
through this agent, so agents already upgraded behind it got it later.

Why it is safe (both maps are security-sensitive):
- A kept entry is never used. `tokens.read_state` and `ca_entries.read_state`
  read only their own key kinds, and a key is kept as a later one only when
  it starts with none of the prefixes they read (`read_prefixes`), so a
  malformed key of a kind this version reads (`root/a/b`, a 300-character
  `token/...`) is still refused, as before.
- It grants a peer nothing: any agent of the mesh may already write any
  entry of these maps (no server tier); a later one is one more entry the
  same peer could send, of bounded shape (below) and size (the sync frame's).
- Secrets it might carry (a later kind of sealed key) are replicated to every
  agent anyway, by design, as the `seal/` entries are.
"""

from __future__ import annotations

import re

# A kind this version does not know (lower-case, as every map's kinds are), a slash, then
# a name of id characters; slashes allowed for kinds keyed by two parts (as `seal/` is).
_LATER = re.compile(r"[a-z][a-z0-9-]{0,31}/[A-Za-z0-9:._-][A-Za-z0-9:._/-]{0,299}")


def later_key(key: str, read_prefixes: tuple[str, ...]) -> bool:
    """Whether `key` has the shape of a later release's entry and no prefix this version
    reads (those keep their own, stricter shape checks)."""
    return _LATER.fullmatch(key) is not None and not key.startswith(read_prefixes)
