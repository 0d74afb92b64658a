"""The Optuna study of ``bench tune``: its storage (the history database), its sampler,
and the heartbeat that lets a dead trial be retried."""

from __future__ import annotations

import os
import time
import warnings

from bench.results.history_writes import lost_a_race
from bench.spec.tune import TuneSpec


def heartbeat(trial, study):
    """Optuna's own heartbeat thread for an asked trial (``optimize`` starts it; the ask and
    tell interface does not), so a trial whose process dies is seen to be stale."""
    from contextlib import nullcontext

    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # a private module: without it, a dead trial is never retried
        return nullcontext()
    return get_heartbeat_thread(trial._trial_id, study._storage)


def open_study(name: str, spec: TuneSpec, storage_url: str, budget_trials: int | None = None):
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and stale-trial retries are "experimental" in Optuna, and meant for its
    # optimize loop: used here on purpose around ask and tell, so the warnings are noise
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    sqlite = storage_url.startswith("sqlite")
    for attempt in range(3):
        try:
            storage = RDBStorage(
                storage_url,
                heartbeat_interval=30,
                grace_period=120,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
            )
            break
        except Exception as e:  # two processes creating the tables at once: one wins
            if not lost_a_race(e) or attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    existing = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    # The first process draws from the suite's seed; a process joining (or resuming) the
    # study draws from its own, so two processes do not propose the same trials.
    seed = spec.seed if name not in existing else spec.seed + os.getpid()
    if spec.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=spec.population)
    else:
        # TPE's random start: a quarter of a small budget, not its default 10 trials
        startup = max(3, min(10, (budget_trials or 40) // 4))
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
    directions = ["maximize" if o.maximise else "minimize" for o in spec.objectives]
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,
        sampler=sampler,
        load_if_exists=True,
    )
