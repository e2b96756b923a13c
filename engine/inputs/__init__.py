"""Inputs of a run: the config (and its annotated TOML), the question set, prompts and teacher
contexts, the preflight checks made before any weights load, and the weights' fingerprints.
"""
