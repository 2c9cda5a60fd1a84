"""The ``roofmap`` command line (Typer).  Each command parses, validates and calls a core function."""
