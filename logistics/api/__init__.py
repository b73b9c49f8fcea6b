"""REST API of return logistics."""
