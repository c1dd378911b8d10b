"""The cluster side: how a job starts (a forked server locally), what it asks SLURM for, and the
workflow's lock."""
