"""Reusable conformance suites that every implementation of a registry protocol runs."""
