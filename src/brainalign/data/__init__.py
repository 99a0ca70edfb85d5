"""Recordings and trial tables, repetitions, alignment, splits and datasets for training."""

from __future__ import annotations

from ..io.recording import TRIAL_COLUMNS, Recording, make_trial_table
from .repetitions import average_repetitions, handle_repetitions, split_repetitions

__all__ = [
    "TRIAL_COLUMNS",
    "Recording",
    "average_repetitions",
    "handle_repetitions",
    "make_trial_table",
    "split_repetitions",
]
