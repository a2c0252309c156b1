"""The control socket: a unix socket in the run directory speaking newline-delimited JSON
(docs/control.md). ``protocol`` holds the message schema, ``server`` the supervisor side,
``client`` what the CLI uses."""
