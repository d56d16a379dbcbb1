"""A flow's life in this process: its scopes, its lifecycle records and their dispatch."""
