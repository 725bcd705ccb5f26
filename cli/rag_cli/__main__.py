"""`python -m rag_cli` is the `rag` command."""

from rag_cli.main import main

main()
