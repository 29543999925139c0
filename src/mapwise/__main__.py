"""``python -m mapwise``."""

from mapwise.cli.entry import main

if __name__ == "__main__":
    main()
