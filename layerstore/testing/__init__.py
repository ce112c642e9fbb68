"""Reusable conformance suites that every implementation of a layerstore protocol runs."""
