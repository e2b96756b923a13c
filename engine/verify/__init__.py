"""Verification: does a completion answer its question? Verifiers, answer parsing, and the worker
pool that runs verifiers that may hang or crash.
"""
