"""A served model kept current: a new version of its alias is checked beside it, then served.

The web service's workers and the stream consumer keep their model in a `ModelRefresher`,
which, with MODEL_REFRESH_SECONDS set, polls the alias the process was started with; when it
names another version, that version is loaded and checked beside the one serving, then served.
Its `model` is what a request or a batch takes, once, at its start: the switch is one
assignment, so every answer is made by one version and names it. A version that fails to load
or to answer the check rides (`service.check_answers`) is refused with one log line and is not
tried again; the one serving goes on. A registry that does not answer is said once, until it
answers again. Only a URI that can move is polled: an alias (`models:/NAME@ALIAS`) or
`models:/NAME/latest`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

from ride_duration.core.errors import ScoringError
from ride_duration.core.settings import Settings
from ride_duration.core.uris import display_uri
from ride_duration.model import loading
from ride_duration.model.resolve import resolve_model
from ride_duration.model.service import ServingModel, check_answers, predictor_for

logger = logging.getLogger(__name__)

# What one look at the alias came to. The metrics count all but `unchanged`.
Outcome = Literal["unchanged", "switched", "refused", "lookup_failed"]
COUNTED_OUTCOMES: tuple[Outcome, ...] = ("switched", "refused", "lookup_failed")
Listener = Callable[[Outcome, ServingModel, ServingModel], None]  # outcome, before, after


def movable(uri: str) -> bool:
    """Whether `uri` may name another version later: an alias, or a registered name's latest."""
    if not uri.startswith("models:/"):
        return False
    name, _, suffix = uri.removeprefix("models:/").strip("/").partition("/")
    return ("@" in name and not suffix) or suffix.lower() == "latest"


class ModelRefresher:
    """The model a process serves (`model`), and the poll that replaces it when its alias moves.

    `listener` hears every look but an unchanged one, with the model before and after it.
    """

    def __init__(
        self, model: ServingModel, settings: Settings, listener: Listener | None = None
    ) -> None:
        self.model = model
        self.settings = settings
        # The URI the process was started with: the alias, even when MODEL_LOCATION stood in.
        self.uri = settings.default_model_uri
        self.listener = listener
        self.polled = threading.Event()  # set once the first look is done
        self._refused: set[str] = set()  # versions refused: not loaded again
        self._failed_lookup: str | None = None  # the lookup's error, said once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def seconds(self) -> int:
        return self.settings.model_refresh_seconds

    def start(self) -> bool:
        """Poll every MODEL_REFRESH_SECONDS in a thread of this process, the first look at
        once; False (and no thread) when refresh is off or the URI names one version."""
        if self.seconds <= 0 or self._thread is not None:
            return False
        if not movable(self.uri):
            logger.info(
                "MODEL_REFRESH_SECONDS is set, but %s names one version: nothing to refresh",
                display_uri(self.uri),
            )
            return False
        self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)
        self._thread.start()
        return True

    def stop(self, wait_seconds: float = 10.0) -> None:
        """End the polling thread: at once between looks, else once the look at hand ends (a
        daemon thread: waited for `wait_seconds` at most)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the thread must outlive any one look
                logger.exception("model refresh: the look at %s failed", display_uri(self.uri))
            self.polled.set()
            self._stop.wait(self.seconds)

    def poll(self) -> Outcome:
        """Look at the URI once: switch to the version it names now, if it is another one that
        loads and passes the check."""
        serving = self.model
        try:
            ref = resolve_model(
                self.uri,
                self.settings.trusted_model_prefixes,
                tracking_uri=self.settings.tracking_uri,
            )
        except ScoringError as error:
            if str(error) != self._failed_lookup:  # once per outage, not once per look
                logger.warning(
                    "model refresh: cannot look up %s (%s); still serving %s",
                    display_uri(self.uri),
                    error,
                    serving.version,
                )
                self._failed_lookup = str(error)
            return self._heard("lookup_failed", serving, serving)
        self._failed_lookup = None
        if ref.resolved_uri == serving.ref.resolved_uri or ref.resolved_uri in self._refused:
            return "unchanged"
        try:
            candidate = ServingModel(ref, predictor_for(ref))
            check_answers(candidate)
        except Exception as error:  # noqa: BLE001 - whatever fails, the version is refused
            self._refused.add(ref.resolved_uri)
            reason = str(error) if isinstance(error, ScoringError) else repr(error)
            logger.warning(
                "model refresh: %s now names %s, which is refused (%s); still serving %s",
                display_uri(self.uri),
                ref.label,
                reason,
                serving.version,
            )
            return self._heard("refused", serving, serving)
        self.model = candidate  # one assignment: a request takes the old model or the new
        # The loaders keep what they loaded for the next month of a batch; a server has no next
        # month, and the old version's arrays go once the requests holding them finish.
        loading.forget_loaded()
        logger.info(
            "model refresh: %s now names %s; serving it (was %s)",
            display_uri(self.uri),
            candidate.version,
            serving.version,
        )
        return self._heard("switched", serving, candidate)

    def _heard(self, outcome: Outcome, before: ServingModel, after: ServingModel) -> Outcome:
        if self.listener is not None:
            self.listener(outcome, before, after)
        return outcome
