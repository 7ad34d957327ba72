"""`gossamer tui`: the terminal UI for intentions, a client of the agent's HTTP API.

Pure screen logic (no terminal, no network) sits in its own modules and is
tested with tables: rows.py (filter, sort, what changed), form.py (the
edit form's draft and the API's errors by field), matrix.py (services x
services under the rules). The shells are thin: client.py speaks HTTP
(aiohttp), app.py and the screens are Textual widgets whose network calls
run in workers, so the screen never waits on the agent.
"""
