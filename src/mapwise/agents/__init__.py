"""The agent CLIs' contracts: how mapwise calls Claude Code and Codex, and reads them.

Pure functions of text: the argv of a run (new or continued), and what a run's
standard output says of itself (session, success, cost, tokens). Running the process
is ``mapwise.executors.agent_steps``'s business.
"""
