#!/usr/bin/env python3
"""A stand-in for the `claude` CLI, so the agent example runs offline.

mapwise runs a `claude:` step as `$MAPWISE_CLAUDE -p "<prompt>"`: the prompt is one
argument, never parsed by a shell. This fake prints what it was asked and "fixes" the
file named after `--file` by appending a line to it.
"""

import sys


def main() -> int:
    args = sys.argv[1:]
    if len(args) != 2 or args[0] != "-p":
        print(f"fake_claude: expected -p PROMPT, got {args!r}", file=sys.stderr)
        return 2
    prompt = args[1]
    print(f"fake agent received the prompt: {prompt}")
    words = prompt.split()
    if "--file" in words:
        path = words[words.index("--file") + 1]
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("# reviewed by the fake agent\n")
        print(f"fake agent edited {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
