"""The embedding model: loading it offline, its backends, a process of its own, tokens and chunks."""
