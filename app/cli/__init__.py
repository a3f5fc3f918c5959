"""The `orchestrator` command line: `main` parses and runs the commands, `client` reaches the
API and the database, `tokens` manages API tokens, `progress` draws a session's progress."""
