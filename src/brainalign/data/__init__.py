"""Recordings and trial tables, repetitions, alignment, splits and datasets for training."""

from __future__ import annotations

from ..io.recording import TRIAL_COLUMNS, Recording, make_trial_table

__all__ = ["TRIAL_COLUMNS", "Recording", "make_trial_table"]
