"""Internal helpers shared by every layer: validation, errors, progress, devices, files, seeds.

Nothing here imports torch at module import time; :mod:`brainalign._utils.device` imports it lazily.
"""
