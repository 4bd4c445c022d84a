"""Samplers: they take a model through a small interface and never import training code."""
