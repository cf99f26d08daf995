"""Scripts the tests run in child processes."""
