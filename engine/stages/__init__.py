"""The per-question stages of method.md: teacher scoring, node selection, targeted continuations,
node scores, and the opt-in parameter-space check. The stage entry points (`Scorer.for_rollout`,
`run_continuations`, `score_nodes`, `param_cosines`) take a `context.QuestionContext`, the
question's settings, models and keys built once by engine.run, plus the data of the call.
"""
