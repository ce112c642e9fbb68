"""A small service that reports who and where it runs."""
