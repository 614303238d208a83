"""What bench stores, and how: every stored format defined once, with one writer and one reader.

    run_folder.py    a run folder: run.json (`RunRecord`) and where each trial folder lies in it
    protocol.py      a run's protocol (`RunProtocol`) and the digest its studies are named by
    trial_folder.py  a trial folder: trial.json (`TrialState`), evals.jsonl, checkpoint.pt, samples/
    evaluation.py    one evaluation point (`EvalRecord`): its JSONL line, its copy in Optuna, its table row
    storage.py       opening a study storage from its URL (journal file, SQLite, PostgreSQL)
    study_store.py   the one adapter between bench and Optuna: studies, slots, claims, states, attributes

A stored field is added in one of these files; readers of older folders get the field's default.
"""
