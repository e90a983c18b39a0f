"""Errors named by cause, and the one table that gives each cause its exit code."""

from __future__ import annotations

import pytest

from pipeline.errors import (
    ArrayError, ConfigError, CorruptVideoError, SettingsMismatchError, StoreError, UsageError, WeightsError, exit_code,
)


@pytest.mark.parametrize("error, code", [
    (UsageError("x"), 2), (ConfigError("x"), 2), (SettingsMismatchError("x"), 2), (ArrayError("x"), 2),
    (StoreError("x"), 1), (WeightsError("x"), 1), (CorruptVideoError("v.mp4", "x"), 1), (RuntimeError("x"), 1),
])
def test_each_cause_has_one_exit_code(error: BaseException, code: int) -> None:
    assert exit_code(error) == code


def test_array_errors_stay_value_and_type_errors_for_numeric_callers() -> None:
    assert isinstance(ArrayError("x"), ValueError) and isinstance(ArrayError("x"), TypeError)
