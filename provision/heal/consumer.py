"""The loop around the handler: long-poll the cluster's lifecycle queue, hand each message to the handler, and settle
it. A message is deleted only once its action is completed or deliberately dropped, so each is handled at least once;
while the handler works on one (a drain can take many minutes) its visibility is extended, so no other consumer takes
it meanwhile. A message whose handling fails comes back after a short delay, and after the queue's redrive limit goes
to the dead-letter queue instead of looping forever.

The messages received together are handled in turn; those waiting theirs stay hidden too, and the handler sees them
all first (``Handler.leaving_together``: hosts that leave together are cordoned before the first drain).

Between receives, at most every ``SWEEP_SECONDS``, the group's nodes are looked at (``sweep``: repair from the cluster
side, ``provision.heal.repair``); `--once` looks once. A sweep that fails is logged and tried again at the next.

Stopping (SIGTERM, Ctrl-C): no new message is received; the one in flight gets a short grace to finish, else it is
made visible again at once for the next heal to take over. Launches still being watched are released too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from provision.aws.queues import Message
from provision.clock import Clock
from provision.heal.actionlog import ActionLog
from provision.heal.events import LifecycleEvent, Unreadable, parse
from provision.heal.handler import Handles, Outcome

WAIT_SECONDS = 20  # SQS's longest long poll: the fewest empty receives
ONCE_WAIT_SECONDS = 2  # --once: long enough to ask every SQS server, short enough to end soon when the queue is empty
WATCH_WAIT_SECONDS = 5  # while launches are watched, they are looked at again at least this often
VISIBILITY_SECONDS = 120  # how long a received message stays hidden; extended while it is worked on
EXTEND_EVERY = VISIBILITY_SECONDS / 3
RETRY_SECONDS = 30  # a message whose handling failed is seen again after this long
GRACE_SECONDS = 20  # after a stop, how long the message in flight may take to finish (a pod gets 30 s by default)
SWEEP_SECONDS = 30  # the group's nodes are looked at (repair from the cluster side) at most this often


class LifecycleQueue(Protocol):
    """``provision.aws.queues.Queue``."""

    def receive(self, *, wait_seconds: int, visibility_seconds: int, max_messages: int = 10) -> list[Message]: ...

    def delete(self, message: Message) -> None: ...

    def hide(self, message: Message, seconds: float) -> None: ...


class Stop:
    """Set by a signal handler (or a test): the consumer stops receiving, and gives the message in flight a grace.
    A signal handler only sets it: the consumer logs it, since writing from the handler could re-enter a write."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.why = ""

    def request(self, now: float, why: str = "") -> None:
        if self.at is None:
            self.at = now
            self.why = why

    @property
    def requested(self) -> bool:
        return self.at is not None


class Released(Exception):
    """The stop's grace ran out while a message was being handled: it goes back to the queue."""


@dataclass
class _Hidden:
    message: Message
    hidden_at: float  # when its visibility was last extended (or it was received)


@dataclass
class _InFlight(_Hidden):
    event: LifecycleEvent


class Consumer:
    def __init__(
        self,
        queue: LifecycleQueue,
        handler: Handles,
        clock: Clock,
        log: ActionLog,
        stop: Stop,
        *,
        wait_seconds: int = WAIT_SECONDS,
        sweep: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.sweep = sweep
        self.swept: float | None = None  # when the last sweep began
        self.wait_seconds = wait_seconds  # the long poll; the demo's in-process heal stops sooner with a short one
        self.handler = handler
        self.clock = clock
        self.log = log
        self.stop = stop
        self.watching: dict[str, _InFlight] = {}  # message id -> a launch not settled yet
        self.current: _InFlight | None = None
        self.queued: list[_Hidden] = []  # the rest of the batch received, waiting their turn
        self.stop_noted = False

    def run(self, *, once: bool) -> None:
        """``once``: handle what the queue holds now, then return. Otherwise run until stopped."""
        while not self.stop.requested:
            wait = self.wait_seconds
            if self.watching or once:
                wait = min(wait, WATCH_WAIT_SECONDS if self.watching else ONCE_WAIT_SECONDS)
            try:
                messages = self.queue.receive(wait_seconds=wait, visibility_seconds=VISIBILITY_SECONDS)
            except Exception as error:
                if once:
                    raise
                # --watch outlives a blip of the endpoint or the network; a lasting fault shows in every line.
                self.log("error", error=f"{type(error).__name__}: {error}", result=f"receive again in {RETRY_SECONDS}s")
                self._pause(RETRY_SECONDS)
                continue
            if not self._work(messages):
                break
            self._recheck()
            self._sweep()
            if once and not messages:
                break
        if self.stop.requested:
            self._note_stop()
        for flight in self.watching.values():
            self.queue.hide(flight.message, 0)
            self.log("released", instance=flight.event.instance_id, kind=flight.event.kind, result="back in the queue")
        self.watching.clear()

    def _sweep(self) -> None:
        now = self.clock.now()
        if self.sweep is None or self.stop.requested or (self.swept is not None and now - self.swept < SWEEP_SECONDS):
            return
        self.swept = now
        try:
            self.sweep()
        except Exception as error:  # the drains go on; a lasting fault shows in every sweep's line
            first = (str(error).splitlines() or [""])[0]
            self.log("error", during="sweep", error=f"{type(error).__name__}: {first}",
                     result=f"looked at again in {SWEEP_SECONDS}s")  # fmt: skip

    def _pause(self, seconds: float) -> None:
        """Wait before trying again, a second at a time, so a stop (SIGTERM) is honoured within a second."""
        until = self.clock.now() + seconds
        while not self.stop.requested and self.clock.now() < until:
            self.clock.sleep(min(1.0, until - self.clock.now()))

    def _work(self, messages: list[Message]) -> bool:
        """Handle each message; False when a stop ended the work (the rest are visible again)."""
        received = self.clock.now()
        self.queued = [_Hidden(message, received) for message in messages]
        parsed = [_parsed(message) for message in messages]
        self._leaving_together([event for event in parsed if isinstance(event, LifecycleEvent)])
        for index, event in enumerate(parsed):
            try:
                if self.stop.requested:
                    raise Released
                self._one(self.queued.pop(0), event)
            except Released:
                self._note_stop()
                self.queued.clear()
                for left in messages[index:]:
                    self.queue.hide(left, 0)
                if self.current is not None:
                    flight = self.current.event
                    self.log("released", instance=flight.instance_id, kind=flight.kind, result="back in the queue")
                elif messages[index:]:
                    self.log("released", messages=len(messages[index:]), result="back in the queue, not started")
                return False
            finally:
                self.current = None
        return True

    def _leaving_together(self, events: list[LifecycleEvent]) -> None:
        try:
            self.handler.leaving_together(events)
        except Exception as error:  # each message is still handled on its own, only without the cordons ahead
            first = (str(error).splitlines() or [""])[0]
            self.log("error", error=f"{type(error).__name__}: {first}", result="each host cordoned at its own turn")

    def _one(self, hidden: _Hidden, event: LifecycleEvent | Unreadable) -> None:
        message = hidden.message
        if isinstance(event, Unreadable):
            self.log("unreadable", message=message.message_id, reason=str(event), result="dropped")
            self.queue.delete(message)
            return
        self.current = _InFlight(message, hidden.hidden_at, event)
        self._settle(self.current, self._handle(self.current))

    def _handle(self, flight: _InFlight) -> Outcome:
        try:
            return self.handler.handle(flight.event, self._between_waits)
        except Released:
            raise
        except Exception as error:  # one bad message must not stop the handler: it comes back, then dead-letters
            first = (str(error).splitlines() or [""])[0]
            self.log(
                "error",
                instance=flight.event.instance_id or None,
                kind=flight.event.kind,
                error=f"{type(error).__name__}: {first}",
                attempt=flight.message.receive_count,
                result=f"retry in {RETRY_SECONDS}s",
            )
            return Outcome("later", RETRY_SECONDS)

    def _settle(self, flight: _InFlight, outcome: Outcome) -> None:
        message_id = flight.message.message_id
        if outcome.verdict == "watch":
            self.watching[message_id] = flight
            return
        self.watching.pop(message_id, None)
        if outcome.verdict == "done":
            self.queue.delete(flight.message)
        else:
            self.queue.hide(flight.message, outcome.seconds)

    def _recheck(self) -> None:
        for flight in list(self.watching.values()):
            if self.stop.requested:
                return
            self._settle(flight, self._handle(flight))
        self._keep_hidden()

    def _between_waits(self) -> None:
        """Runs between the handler's waits: messages stay hidden, and a stop's grace is enforced."""
        self._keep_hidden()
        if self.stop.at is None:
            return
        self._note_stop()
        if self.clock.now() - self.stop.at >= GRACE_SECONDS:
            raise Released

    def _note_stop(self) -> None:
        if not self.stop_noted:
            self.stop_noted = True
            in_flight = self.current.event.instance_id if self.current else None
            self.log("stopping", reason=self.stop.why or None, finishing=in_flight, grace=f"{GRACE_SECONDS}s")

    def _keep_hidden(self) -> None:
        now = self.clock.now()
        flights: list[_Hidden] = [*self.watching.values(), *([self.current] if self.current else []), *self.queued]
        for flight in flights:
            if now - flight.hidden_at >= EXTEND_EVERY:
                self.queue.hide(flight.message, VISIBILITY_SECONDS)
                flight.hidden_at = now


def _parsed(message: Message) -> LifecycleEvent | Unreadable:
    try:
        return parse(message.body)
    except Unreadable as error:
        return error
