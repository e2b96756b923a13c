"""Inputs of a run: the config, the question set, prompts and teacher contexts, and the preflight
checks made before any weights load.
"""
