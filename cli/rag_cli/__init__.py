"""The rag command line."""
