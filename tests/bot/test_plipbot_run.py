"""`plipbot run` as a real subprocess (the console script, its settings from the environment) against the
fake Discord running in this test process, in embedded mode on the tiny random checkpoint (NOT PLIP).

This is the only test that proves the shipped entry point works end to end: settings from `PLIPBOT_*`
variables, `point_discord_at` applied inside the process, login, command sync, the gateway session, one
answered mention, and a clean exit on the signals a terminal (SIGINT) and an orchestrator (SIGTERM:
`docker stop`, systemd, Kubernetes) send.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import imagegen
from tests.fakediscord.server import FakeDiscord

pytest_plugins = ["tests.fakediscord.conftest_plugin"]

PLIPBOT = Path(sys.executable).parent / "plipbot"
STARTUP_TIMEOUT_S = 90.0  # warm start (torch, model, label sets, store) before login, sync, gateway
ANSWER_TIMEOUT_S = 30.0  # first answer imports torch and loads the (tiny) model
EXIT_TIMEOUT_S = 5.0


class BotProcess:
    """A running `plipbot run`, its output in files (so a full pipe never blocks it)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.stdout_path = log_dir / "plipbot.stdout"
        self.stderr_path = log_dir / "plipbot.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen([str(PLIPBOT), "run"], env=env, stdout=out, stderr=err)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def alive_or_none(self) -> None:
        """For wait checks: fail at once (with the output) if the bot died instead of waiting it out."""
        if self.popen.poll() is not None:
            raise AssertionError(f"plipbot run exited with {self.popen.returncode}\n{self.output()}")

    def stop(self, signum: int) -> int:
        """Send `signum`; the exit code, or a failure with the output if it is still running after 5 s."""
        self.popen.send_signal(signum)
        try:
            return self.popen.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(
                f"plipbot run did not exit within {EXIT_TIMEOUT_S} s of {signal.Signals(signum).name}\n"
                + self.output()
            )

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def bot_env(fake: FakeDiscord, checkpoint: Path, data_dir: Path) -> dict[str, str]:
    """The process environment: the test's (PLIPBOT_* cleared by the autouse fixture) plus the bot's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLIPBOT_")}
    env.update(
        {
            "PLIPBOT_DATA_DIR": str(data_dir),
            "PLIPBOT_MODEL__NAME": str(checkpoint),
            "PLIPBOT_MODEL__DEVICE": "cpu",
            "PLIPBOT_DISCORD__TOKEN": fake.token,
            "PLIPBOT_DISCORD__API_BASE": fake.api_base,
            "PLIPBOT_DISCORD__GATEWAY_URL": fake.gateway_url,
            "PLIPBOT_DISCORD__GUILD_READY_TIMEOUT_S": "0.05",
            "PLIPBOT_DISCORD__SYNC_GUILD_ID": fake.guild_id,
            "PLIPBOT_DISCORD__COOLDOWN_USER_S": "0",
            "PLIPBOT_DISCORD__COOLDOWN_CHANNEL_S": "0",
            "PLIPBOT_WORKERS__ALLOW_PRIVATE_URLS": "true",  # the fake CDN is on 127.0.0.1
            "PLIPBOT_INGEST__GATE_THRESHOLD": "0",  # a random model cannot judge pathology
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def start_bot(
    fake_discord: FakeDiscord, tiny_checkpoint: Path, tmp_path: Path
) -> Iterator[Callable[[], BotProcess]]:
    """Starts `plipbot run` against the fake and waits until discord.py fired on_ready; kills leftovers."""
    started: list[BotProcess] = []

    def start() -> BotProcess:
        bot = BotProcess(bot_env(fake_discord, tiny_checkpoint, tmp_path / "data"), tmp_path)
        started.append(bot)

        def ready() -> bool | None:
            bot.alive_or_none()
            return True if "connected as" in bot.stderr else None

        fake_discord.wait_until_blocking(ready, timeout=STARTUP_TIMEOUT_S, what="plipbot run on_ready")
        return bot

    yield start
    for bot in started:
        bot.kill()


def test_plipbot_run_logs_in_answers_a_mention_and_exits_cleanly_on_sigint(
    fake_discord: FakeDiscord, start_bot: Callable[[], BotProcess]
) -> None:
    bot = start_bot()

    assert "embedded mode" in bot.stdout
    identify = fake_discord.identify_payloads
    assert len(identify) == 1 and identify[0]["token"] == fake_discord.token
    synced = {c["name"] for c in fake_discord.synced_commands(fake_discord.guild_id)}
    assert {"suggest", "similar", "labels", "consent", "Suggest labels", "Find similar cases"} <= synced
    assert fake_discord.synced_commands() == []  # SYNC_GUILD_ID: nothing global
    assert fake_discord.unknown_requests == []

    tile = imagegen.encode(imagegen.ihc().crop((0, 0, 200, 200)))
    attachment = fake_discord.add_attachment(tile, "biopsy.png", "image/png")
    mark = fake_discord.mark()
    posted = fake_discord.post_user_message("what is this?", mention_bot=True, attachments=[attachment])

    def replied() -> object:
        bot.alive_or_none()
        sent = fake_discord.sent_messages(fake_discord.channel_id, after=mark)
        return sent[0] if sent else None

    sent = fake_discord.wait_until_blocking(replied, timeout=ANSWER_TIMEOUT_S, what="the bot's reply")
    text = sent.json["content"]
    assert str(sent.json["message_reference"]["message_id"]) == posted["id"]
    assert "local checkpoint" in text and "not PLIP" in text, text
    assert "not a diagnosis" in text, text
    assert "%" in text, text
    assert [f.filename for f in sent.files] == ["suggestions.png"]
    assert sent.files[0].data.startswith(b"\x89PNG")
    assert attachment["id"] in fake_discord.cdn_downloads  # the worker fetched it from the "CDN"

    code = bot.stop(signal.SIGINT)
    assert code == 0, f"exit code {code} after SIGINT\n{bot.output()}"
    assert "Traceback" not in bot.stderr, bot.output()


def test_a_stop_mid_reply_lets_the_reply_finish(
    fake_discord: FakeDiscord, start_bot: Callable[[], BotProcess]
) -> None:
    """SIGTERM while the answer is on its way to Discord: the reply completes, then the bot exits."""
    bot = start_bot()
    fake_discord.delay_responses("create_message", 1.5)
    attachment = fake_discord.add_attachment(
        imagegen.encode(imagegen.ihc().crop((0, 0, 120, 120))), "tile.png", "image/png"
    )
    mark = fake_discord.mark()
    fake_discord.post_user_message("what is this?", mention_bot=True, attachments=[attachment])

    def sending() -> object:
        bot.alive_or_none()
        return fake_discord.sent_messages(fake_discord.channel_id, after=mark) or None

    fake_discord.wait_until_blocking(sending, timeout=ANSWER_TIMEOUT_S, what="the bot's reply")
    code = bot.stop(signal.SIGTERM)  # the reply's response is still 1.5 s away
    assert code == 0, f"exit code {code} after SIGTERM\n{bot.output()}"
    assert "waiting for 1 handler(s) in flight" in bot.stderr, bot.output()
    assert "Traceback" not in bot.stderr, bot.output()


def test_plipbot_run_exits_cleanly_on_sigterm(start_bot: Callable[[], BotProcess]) -> None:
    """What `docker stop` (through compose's `init: true`), systemd and Kubernetes send."""
    bot = start_bot()
    code = bot.stop(signal.SIGTERM)
    assert code == 0, f"exit code {code} after SIGTERM\n{bot.output()}"
    assert "Traceback" not in bot.stderr, bot.output()


def test_plipbot_run_without_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLIPBOT_")}
    env["PLIPBOT_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [str(PLIPBOT), "run"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "PLIPBOT_DISCORD__TOKEN" in lines[0], (
        done.stderr
    )
