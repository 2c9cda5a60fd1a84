"""``python -m roofmapnet`` is the same as the ``roofmap`` command."""

from roofmapnet.cli.app import main

if __name__ == "__main__":
    main()
