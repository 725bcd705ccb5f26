"""What the four RAG services share: settings, errors, identity, server bootstrap, channels."""
