"""The command line: thin commands that parse, call ``mapwise.api``, and render."""
