"""The per-question stages of method.md: teacher scoring, node selection, targeted continuations,
node scores, and the opt-in parameter-space check.
"""
