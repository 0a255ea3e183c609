"""Entry point for ``python -m accelmri`` and the ``accelmri`` console script."""

from accelmri.cli import main

if __name__ == "__main__":
    main()
