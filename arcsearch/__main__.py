"""``python -m arcsearch`` (and ``torchrun ... -m arcsearch train ...``): the command line."""

from arcsearch.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
