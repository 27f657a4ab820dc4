"""Moderator rules, cooldowns (with a fake clock) and label-list parsing: plain logic, no discord."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.moderation import (
    ADMINISTRATOR,
    MANAGE_GUILD,
    MODERATOR_ONLY_MESSAGE,
    Cooldowns,
    can_moderate,
    parse_label_list,
    require_moderator,
)
from plipbot.errors import PermissionDeniedError, PlipbotError

ROLE = 600_000_000_000_000_001
OTHER_ROLE = 600_000_000_000_000_002
MANAGE_CHANNELS = 0x10
SEND_MESSAGES = 0x800
GUILD = 900_000_000_000_000_001
CHANNEL = 800_000_000_000_000_001
OTHER_CHANNEL = 800_000_000_000_000_002
USER = 111_111_111_111_111_111
OTHER_USER = 222_222_222_222_222_222


@pytest.mark.parametrize(
    ("permissions", "roles", "owner", "configured", "allowed"),
    [
        (MANAGE_GUILD, [], False, None, True),
        (ADMINISTRATOR, [], False, None, True),
        (MANAGE_GUILD | SEND_MESSAGES, [], False, ROLE, True),
        (0, [], True, None, True),  # the owner, whatever their roles
        (SEND_MESSAGES, [OTHER_ROLE, ROLE], False, ROLE, True),
        (SEND_MESSAGES, (role for role in [ROLE]), False, ROLE, True),  # any iterable
        (SEND_MESSAGES, [OTHER_ROLE], False, ROLE, False),
        (SEND_MESSAGES, [ROLE], False, None, False),  # a role only counts once configured
        (MANAGE_CHANNELS, [], False, None, False),  # channel rights are not server rights
        (0, [], False, None, False),
    ],
)
def test_who_may_moderate(
    permissions: int, roles: Iterable[int], owner: bool, configured: int | None, allowed: bool
) -> None:
    assert can_moderate(permissions, roles, owner, configured) is allowed


def test_require_moderator_raises_a_short_error() -> None:
    require_moderator(MANAGE_GUILD, [], False, None)  # allowed: returns quietly
    with pytest.raises(PermissionDeniedError) as caught:
        require_moderator(SEND_MESSAGES, [OTHER_ROLE], False, ROLE)
    assert str(caught.value) == MODERATOR_ONLY_MESSAGE
    assert (
        caught.value.user_message == "Only moderators (Manage Server or the configured role) can change this."
    )
    assert isinstance(caught.value, PlipbotError)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_user_and_channel_cooldowns() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(per_user_s=10, per_channel_s=3, clock=clock)

    assert cooldowns.check(GUILD, CHANNEL, USER) is None
    assert cooldowns.check(GUILD, OTHER_CHANNEL, USER) == pytest.approx(10)  # the user waits everywhere
    assert cooldowns.check(GUILD, CHANNEL, OTHER_USER) == pytest.approx(3)  # the channel is busy
    assert cooldowns.check(GUILD, OTHER_CHANNEL, OTHER_USER) is None

    clock.now += 3
    assert cooldowns.check(GUILD, CHANNEL, USER) == pytest.approx(7)  # the longer of the two
    assert cooldowns.check(GUILD, CHANNEL, OTHER_USER) == pytest.approx(7)  # OTHER_USER's own cooldown

    clock.now += 6.5
    assert cooldowns.check(GUILD, CHANNEL, USER) == pytest.approx(0.5)  # refusals did not restart it
    clock.now += 0.5
    assert cooldowns.check(GUILD, CHANNEL, USER) is None
    assert cooldowns.check(GUILD, CHANNEL, USER) == pytest.approx(10)


def test_zero_disables_a_cooldown_and_bad_values_are_refused() -> None:
    cooldowns = Cooldowns(per_user_s=0, per_channel_s=0, clock=FakeClock())
    assert all(cooldowns.check(GUILD, CHANNEL, USER) is None for _ in range(5))
    assert len(cooldowns) == 0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="per_user_s"):
            Cooldowns(per_user_s=bad, per_channel_s=1)


def test_expired_cooldowns_are_pruned() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(per_user_s=1, per_channel_s=0, clock=clock)
    for user in range(1, 3000):
        assert cooldowns.check(GUILD, CHANNEL, user) is None
        clock.now += 0.01
    assert len(cooldowns) < 1200  # only the last second's users (plus at most one sweep's worth)


def test_only_one_of_many_simultaneous_requests_passes() -> None:
    cooldowns = Cooldowns(per_user_s=60, per_channel_s=60)
    barrier = threading.Barrier(8)

    def ask(_: int) -> float | None:
        barrier.wait()
        return cooldowns.check(GUILD, CHANNEL, USER)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(8)))
    assert results.count(None) == 1


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("adipose, mucus; debris", ["adipose", "mucus", "debris"]),
        ("  smooth   muscle ,\n\nlymph node\r\n", ["smooth muscle", "lymph node"]),
        (',, ;\n "benign" , “malignant”', ["benign", "malignant"]),
        ("b, a, b", ["b", "a", "b"]),  # order and duplicates kept: LabelSet names duplicates
        ("colon", ["colon"]),
        ("", []),
        (" ;, ", []),
    ],
)
def test_parse_label_list(text: str, labels: list[str]) -> None:
    assert parse_label_list(text) == labels
