"""`gossamer tui`: the terminal UI for intentions, a client of the agent's HTTP API.

Pure screen logic (no terminal, no network; listed in PURE_MODULES) is
tested with tables: rows.py (filter, sort, what changed, where the cursor
goes), form.py (the edit form's draft, its problems by field, the agent's
400 read back by field), matrix.py (services x services under the rules,
the check panel's request), plan_view.py (a policy file's plan as lines),
history.py (the agent's change records as lines). The shells are thin:
client.py speaks HTTP (aiohttp); app.py keeps the agent's state live with
blocking-query workers; grid.py draws only the lines on screen; table.py,
main_screen.py, form_screen.py, detail_screen.py, matrix_screen.py,
apply_screen.py, history_screen.py, permission_screen.py, check_panel.py
and confirm.py are Textual widgets whose network calls run in workers, so
the screen never waits on the agent.
"""
