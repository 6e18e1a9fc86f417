"""``binance-pm watch --fleet``: three members, each sending from its own loopback address to a
simulated exchange that counts each address apart, share 90 accounts of all three products
through a real ``redis-server``; then one is killed, one paused past its lease and resumed,
and Redis is stopped. What each member printed (JSON lines, each naming its member) and what
the exchange counted tell whether every account was watched once, the budgets used, the dead
member's accounts taken over in time, and nothing sent once Redis was gone."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .commands import keyless_env, toml_for
from .redis_server import RedisServer, running_server
from .served import serve, stats

TTL = 4.0  # --lease-ttl
EVERY = 0.5  # --every: the budgets, not this, set the pace
WINDOW = 2.0
#: Per IP and window: room for 10 PM account calls (papi, 20 each) and 10 PM Pro SPAN account
#: calls (sapi IP, 5 each); each member asks for about four times that.
LIMITS = {"papi-ip": 200, "sapi-ip": 50, "sapi-uid": 100_000, "api-ip": 100_000, "fapi-ip": 1000}
MEMBERS = ("m1", "m2", "m3")


class Member:
    """One ``watch --fleet`` process and every JSON line it printed, with when it came."""

    def __init__(self, name: str, address: str, command: list[str]) -> None:
        self.name, self.address = name, address
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=keyless_env(),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.time(), json.loads(line)))

    def updates(self, since: float, until: float = float("inf")) -> list[dict[str, Any]]:
        """Its account records made in ``[since, until)`` (wall clock)."""
        return [
            r
            for _, r in self.lines
            if "account" in r and since <= _epoch(r["time"]) < until and r["member"] == self.name
        ]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.reader.join(5)
        return err


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


@contextmanager
def _fleet(redis: RedisServer, base_url: str, accounts: Path) -> Iterator[list[Member]]:
    members = []
    for i, name in enumerate(MEMBERS):
        address = f"127.0.0.{i + 1}"
        command = [
            sys.executable,
            "-m",
            "binance_pm",
            "watch",
            "--accounts",
            str(accounts),
            "--base-url",
            base_url,
            "--fleet",
            redis.url,
            "--member",
            name,
            "--source-address",
            address,
            "--lease-ttl",
            str(TTL),
            "--every",
            str(EVERY),
            "--window",
            str(WINDOW),
            *(x for budget, weight in LIMITS.items() for x in (f"--{budget}", str(weight))),
            "--format",
            "jsonl",
            "--seconds",
            "90",
        ]
        members.append(Member(name, address, command))
    try:
        yield members
    finally:
        for member in members:
            member.stop()


def _watchers(members: list[Member], since: float, until: float) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for member in members:
        for record in member.updates(since, until):
            found[record["account"]].add(member.name)
    return found


def _period(members: list[Member], since: float, until: float) -> float:
    """The longest time between two polls of one account in ``[since, until)``."""
    times: dict[str, list[float]] = defaultdict(list)
    for member in members:
        for record in member.updates(since, until):
            times[record["account"]].append(_epoch(record["time"]))
    gaps = []
    for seq in times.values():
        seq.sort()
        gaps += [b - a for a, b in itertools.pairwise(seq)]
    return max(gaps)


def _use(arrivals: list[list[Any]], budget: str, limit: int, since: float, until: float) -> float:
    """The share of ``budget``'s limit the whole windows of ``[since, until)`` (server ms) used."""
    window_ms = WINDOW * 1000
    first = (since // window_ms + 1) * window_ms
    windows = int((until - first) // window_ms)
    assert windows >= 2
    end = first + windows * window_ms
    used = sum(w for at, name, w in arrivals if name == budget and first <= at < end)
    return float(used / (limit * windows))


def test_three_members_share_ninety_accounts_and_ride_out_a_kill_a_pause_and_losing_redis(
    tmp_path: Path,
) -> None:
    budgets = (x for budget, weight in LIMITS.items() for x in (f"--{budget}", str(weight)))
    with (
        running_server() as redis,
        serve("--accounts", "90", "--seed", "11", "--window", str(WINDOW), *budgets) as served,
        _fleet(redis, served.base_url, toml_for(served.accounts, tmp_path)) as members,
    ):
        m1, m2, m3 = members
        names = {account["name"] for account in served.accounts}

        # Steady: every account watched by exactly one member, each IP's budgets used.
        time.sleep(1.5 * TTL)  # every member has looked, and the first handovers are done
        since = time.time()
        time.sleep(5 * WINDOW + 0.5)  # five windows: a slow turn of a busy machine costs less
        until = time.time()
        watchers = _watchers(members, since, until)
        assert set(watchers) == names
        assert {a: w for a, w in watchers.items() if len(w) != 1} == {}
        assert all(len({a for a, w in watchers.items() if w == {m.name}}) >= 15 for m in members)
        seen = stats(served.base_url, arrivals=True)
        arrivals = seen["arrivals"]
        now_ms = max(at for at, _, _ in arrivals)
        start_ms = now_ms - (until - since) * 1000
        for member in members:
            at = "" if member.address == "127.0.0.1" else f"@{member.address}"
            for family, limit in (("papi", LIMITS["papi-ip"]), ("sapi", LIMITS["sapi-ip"])):
                use = _use(arrivals, f"{family}_ip{at}", limit, start_ms, now_ms)
                assert use >= 0.9, (member.name, family, use)
        assert seen["by_status"].get("429", 0) == 0
        assert seen["by_status"].get("418", 0) == 0

        # A member killed: its accounts are polled by the others within the lease and a period:
        # the period the budgets allow (each survivor's egress budget now spread over half as
        # many accounts again), and a second of slack for a busy machine.
        period = 1.5 * _period(members, since, until)
        theirs = {a for a, w in watchers.items() if w == {"m2"}}
        assert theirs
        m2.process.kill()
        killed = time.time()
        deadline = killed + TTL + period + 1.0
        while time.time() < deadline:
            time.sleep(0.25)
            taken = _watchers([m1, m3], killed, time.time())
            if theirs <= set(taken):
                break
        assert theirs <= set(taken), (sorted(theirs - set(taken)), period)

        # A member paused past its lease and resumed: it gives its accounts up, and no account
        # is watched by two members at once after it resumes (a share may move back to it,
        # once: m1's records before its own, never after).
        os.kill(m3.process.pid, signal.SIGSTOP)
        time.sleep(TTL + 1.5)
        os.kill(m3.process.pid, signal.SIGCONT)
        resumed = time.time() + 0.5  # its calls sent before the pause come back first
        time.sleep(TTL)
        order: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for member in (m1, m3):
            for record in member.updates(resumed, time.time()):
                order[record["account"]].append((_epoch(record["time"]), member.name))
        assert any(m == "m3" for seq in order.values() for _, m in seq)  # it took a share back
        for account, seq in order.items():
            seq.sort()
            first_m3 = next((t for t, m in seq if m == "m3"), None)
            if first_m3 is not None:
                late_m1 = [t for t, m in seq if m == "m1" and t > first_m3]
                assert late_m1 == [], (account, seq)

        # Redis stopped: the members say so, and send nothing once it is gone.
        assert redis.process is not None
        redis.stop()
        stopped = time.time()
        time.sleep(1.5)
        before = stats(served.base_url)["requests"]
        time.sleep(TTL)  # past 0.9 of a lease: the fleet's holds have lapsed too
        assert stats(served.base_url)["requests"] == before
        for member in (m1, m3):
            lost = [r for t, r in member.lines if r.get("redis") == "lost"]
            assert lost, member.name
            assert lost[0]["member"] == member.name
            assert _epoch(lost[0]["time"]) - stopped <= 15
    errors = {m.name: m.stop() for m in members}
    for name in ("m1", "m3"):
        assert "cannot reach Redis" in errors[name], errors[name][-2000:]
        assert "Traceback" not in errors[name], errors[name][-2000:]


def test_a_fleet_members_every_json_line_names_it_those_of_dropped_accounts_too(
    tmp_path: Path,
) -> None:
    with running_server() as redis, serve("--accounts", "4", "--seed", "7") as served:
        path = toml_for(served.accounts, tmp_path)
        # One account without its product, and a key the exchange does not know: its product
        # cannot be told, and it is dropped, said in a JSON line of its own.
        text = re.sub(r'(?m)^endpoint = ".*"\n', "", path.read_text(), count=1)
        first_key = served.accounts[0]["api_key"]
        path.write_text(text.replace(first_key, "x" * len(first_key), 1))
        options = ["--base-url", served.base_url, "--fleet", redis.url, "--member", "solo"]
        options += ["--format", "jsonl", "--seconds", "2", "--every", "0.5"]
        done = subprocess.run(
            [sys.executable, "-m", "binance_pm", "watch", "--accounts", str(path), *options],
            capture_output=True,
            text=True,
            timeout=60,
            env=keyless_env(),
        )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    dropped = [r for r in records if r.get("account") == served.accounts[0]["name"]]
    assert dropped
    assert dropped[0]["final"]
    assert len(records) > len(dropped)  # the others were polled
    assert all(r["member"] == "solo" for r in records)
    assert "Traceback" not in done.stderr
