"""The pure core: domain values, the repo diff, changeset state and schedule, repo selection,
and the protocols the services need from a code host. No I/O and no clock reads (``now`` is a
parameter); nothing here imports from outside ``repo_updater.core``."""
