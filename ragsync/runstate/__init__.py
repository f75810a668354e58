"""Sync runs: the run-state records, the ledger that folds them, their keys, and the deletion budget they are
judged by."""
