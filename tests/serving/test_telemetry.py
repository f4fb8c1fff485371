"""Metrics (shared/serving/telemetry.py): label values bounded in length and in count."""

from __future__ import annotations

from shared.serving import telemetry
from shared.serving.telemetry import LABELLED_USERS, USER_LABEL_CHARS, user_label


def test_user_labels_are_bounded_in_length_and_count(monkeypatch):
    monkeypatch.setattr(telemetry, "_users", set())
    assert user_label("alice") == "alice"
    long_ids = ["x" * 65536, "x" * 65535]
    labels = [user_label(user) for user in long_ids]
    assert all(len(label) == USER_LABEL_CHARS for label in labels)
    assert labels[0] != labels[1] and user_label(long_ids[0]) == labels[0]  # distinct, and stable
    for i in range(2 * LABELLED_USERS):
        user_label(f"user{i}")
    assert user_label("late") == "other" and user_label("alice") == "alice"
    assert len(telemetry._users) == LABELLED_USERS
