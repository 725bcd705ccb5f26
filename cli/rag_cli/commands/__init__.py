"""One module per group of `rag` commands; `rag_cli.main` builds the parser over them."""
