"""Where lifecycle records go: each sink receives every batch the dispatcher drains."""
