"""Models: loading and forward passes, the true vocabulary, exact token text, and the generation
backend that samples rollouts and continuations.
"""
