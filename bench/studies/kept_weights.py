"""`--keep best` (the default): of a study's finished trials only the best keeps its weights.

Every trial writes weights-best.pt / weights-last.pt as it trains (train.py), so that whichever
trial ends best has them. At a study's scale keeping them all is most of the disk a run takes
(1,300 trials x 27-53 MB), while later commands (`bench score --checkpoint`, AIS, samples of the
winner) want the best trial's. So after each report a worker drops the weights of the study's
other finished trials. The records, sample grids and trial.json of every trial stay.

Safe with many workers without a lock: trials are ordered by (score key, tiebreak, trial number),
a total order over finished trials whose values never change, so every worker's "best" is at most
as good as the true best and the true best is never dropped; only files of finished slots are
touched (nothing trains there any more), and unlinking twice is harmless.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.records.study_store import StoredStudy, stored_records
from bench.records.trial_folder import TrialFolder
from bench.scores import score_for


def drop_weights_of_other_trials(study: StoredStudy, folder_of) -> int:
    """Unlink the weights of the study's finished slots other than its best; returns how many
    slots lost weights. `folder_of(trial)` is a trial's folder."""
    score = score_for(study.meta.dataset)
    finished = [slot.finished for slot in study.slots() if slot.finished is not None]
    if len(finished) < 2:
        return 0

    def order(trial):
        best = score.best_record(stored_records(trial))
        return (*(score.record_key(best) if best else (math.inf, math.inf)), trial.number)

    best = min(finished, key=order)
    dropped = 0
    for trial in finished:
        if trial.number != best.number:
            dropped += TrialFolder(Path(folder_of(trial))).drop_weights()
    return dropped
