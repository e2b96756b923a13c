"""One run, question by question: load the world once, then for each question seed it, plan its
nodes, run the stages (engine.stages) and write its part file.

    world.py        the World loaded once (models, verifier, sampler, teachers), the question's
                    prompts and its QuestionContext (settings, models, keys every stage reads)
    seed.py         prompts, the G rollouts, their verdicts and the models' hidden states
    plan.py         which nodes of a rollout get continuations; what a question will cost
    orchestrate.py  process_question and run_questions: the stages in order, failures recorded
    rows.py         the question's output rows, one function per group of tables
    metadata.py     environment, model fingerprints, run tables, timings
    timing.py       seconds per stage of a question (the question_stages table)
"""
