"""The job runner every labeler shares: clips from a source, through a labeler, into the store.

A labeler says what one clip needs, in three stages (:class:`Labeler`):

1. ``prepare(source, clip_id)``: load the clip and run the models that look at one clip alone (ALMs, VLM)
   - in a worker thread;
2. ``resolve(work, session)``: the clip's asynchronous step (LLM requests) - a coroutine on an asyncio loop
   in a second thread, all clips sharing one ``session`` (one HTTP client, one concurrency limit);
3. ``finish(works)``: the batched models (grounder, segmenter) over several clips at once - in the calling
   thread - returning each clip's masks and manifest record.

The runner does the rest, the same for every labeler: overlap of the stages, at most ``max_in_flight``
clips in memory, resume (clips the store already has are skipped), sharding (through the
:class:`~openavs_st.data.store.StoreWriter`), a failure record naming the stage for a clip that fails
anywhere (the job goes on), a progress bar, and this run's summary (:func:`openavs_st.data.store.summarize`
over the records it wrote). It imports nothing from Lightning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from openavs_st.data.clip import Clip
from openavs_st.data.store import StoreWriter, summarize

log = logging.getLogger(__name__)


@dataclass
class ClipWork:
    """One clip on its way through a labeler; labelers subclass it with what their stages add.

    Attributes:
        clip: the loaded clip.
        frames: frames the batched stage will process (what ``frame_batch`` counts).
        timings: seconds per stage, recorded in the manifest.
        pending: the asynchronous stage still has to run for this clip.
    """

    clip: Clip
    frames: int
    timings: dict[str, float] = field(default_factory=dict)
    pending: bool = False
    future: concurrent.futures.Future | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """Whether the batched stage can take the clip now."""
        return not self.pending or (self.future is not None and self.future.done())


def load_clip(source: Any, clip_id: str) -> tuple[Clip, dict[str, float], list[int]]:
    """A labeler's first step: the clip from its source, the seconds that took (``timings["load_s"]``) and its
    valid frame indices; a clip without a valid frame is an error naming it."""
    start = time.perf_counter()
    clip = source.load(clip_id)
    timings = {"load_s": time.perf_counter() - start}
    valid = [t for t in range(clip.num_frames) if clip.frame_valid[t]]
    if not valid:
        raise ValueError(f"clip {clip_id!r} has no valid frame")
    return clip, timings, valid


class Labels(NamedTuple):
    """What a labeler's ``finish`` gives for one clip (a plain ``(masks, record)`` pair also does): ``masks
    [T, H, W]`` bool, the manifest record and, from a labeler with ``semantic`` set, ``classes [T, H, W]``
    class-index maps (0 = background) for a store opened with the labeler's ``class_names``."""

    masks: np.ndarray
    record: dict[str, Any]
    classes: np.ndarray | None = None


class Labeler(Protocol):
    """What the runner needs of a labeler (see the module docstring)."""

    name: str
    async_stage: str  # name of stage 2 in failure records (``llm``)

    def load_models(self) -> None: ...

    def provenance(self) -> dict[str, Any]: ...

    def prepare(self, source: Any, clip_id: str) -> ClipWork: ...

    def open_session(self) -> Any: ...  # an object with async open()/close(), or None without stage 2

    async def resolve(self, work: Any, session: Any) -> None: ...

    def finish(self, works: Sequence[Any]) -> list[Labels | tuple[np.ndarray, dict[str, Any]]]: ...

    def failure_record(self, work: Any) -> dict[str, Any]: ...


def failure_reason(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Failed:
    """A clip that failed in ``prepare``."""

    clip_id: str
    reason: str
    stage: str


@dataclass
class RunStats:
    """What one run (this process, this shard) did: the records it wrote plus skip counts and time.

    The summary keys (``clips_ok``, ``llm_calls`` ... see :func:`~openavs_st.data.store.summarize`) read as
    attributes: ``stats.clips_ok``.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    clips_skipped: int = 0
    seconds: float = 0.0

    @property
    def failures(self) -> dict[str, str]:
        """Clip id -> failure status of the clips that failed in this run."""
        return {r["id"]: r["status"].removeprefix("failed: ") for r in self.records if r["status"] != "ok"}

    def to_dict(self) -> dict[str, Any]:
        summary = summarize(self.records)
        return {
            **summary,
            "clips_skipped": self.clips_skipped,
            "seconds": round(self.seconds, 3),
            "frames_per_second": summary["frames"] / self.seconds if self.seconds > 0 else 0.0,
            "failures": self.failures,
        }

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        summary = summarize(self.records)
        if key in summary:
            return summary[key]
        raise AttributeError(f"RunStats has no {key!r}")


class BackgroundLoop:
    """An asyncio loop in a daemon thread holding one opened session for the whole job."""

    def __init__(self, session: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="labeler-async", daemon=True)
        self.thread.start()
        self.session = session
        try:
            self.run(session.open())
        except BaseException:
            self._stop()
            raise

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the loop and wait for its result."""
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Schedule a coroutine on the loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        try:
            self.run(self.session.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


_DONE = object()


class Runner:
    """Runs a labeler over the clips of ``source`` that ``writer``'s shard still has to do.

    Args:
        overlap: run the stages concurrently; False runs one clip at a time through every stage (for
            debugging and comparison; the results are the same).
        max_in_flight: clips prepared but not yet written (bounds memory and queued requests).
        frame_batch: frames per call of the batched stage (several clips share a batch).
        progress: show a progress bar (tqdm, on stderr).
        limit: label at most this many clips (a quick look at a big input).
    """

    def __init__(
        self,
        labeler: Labeler,
        source: Any,
        writer: StoreWriter,
        *,
        overlap: bool = True,
        max_in_flight: int = 16,
        frame_batch: int = 16,
        progress: bool = True,
        limit: int | None = None,
    ) -> None:
        if max_in_flight < 1 or frame_batch < 1:
            raise ValueError(f"max_in_flight and frame_batch must be >= 1, got {max_in_flight}, {frame_batch}")
        self.labeler = labeler
        self.source = source
        self.writer = writer
        self.overlap = overlap
        self.max_in_flight = int(max_in_flight)
        self.frame_batch = int(frame_batch)
        self.progress = progress
        self.limit = limit
        self.stats = RunStats()
        # A clip takes a slot before it is prepared and gives it back once written or recorded as failed
        # (_done runs exactly once per clip), so at most max_in_flight clips are in memory however far
        # the preparing thread could run ahead.
        self._slots = threading.Semaphore(self.max_in_flight)
        self._bar: Any = None
        self._background: BackgroundLoop | None = None

    # -- bookkeeping

    def _done(self) -> None:
        self._slots.release()
        self._bar.update(1)
        failed = sum(1 for r in self.stats.records if r["status"] != "ok")
        self._bar.set_postfix(ok=len(self.stats.records) - failed, failed=failed, refresh=False)

    def _fail(self, clip_id: str, reason: str, stage: str, extra: Mapping[str, Any] | None = None) -> None:
        log.warning("clip %s failed at %s: %s", clip_id, stage, reason)
        self.stats.records.append(self.writer.write_failure(clip_id, reason, {"failed_stage": stage, **(extra or {})}))
        self._done()

    def _prepare(self, clip_id: str) -> ClipWork | Failed:
        try:
            work = self.labeler.prepare(self.source, clip_id)
        except Exception as exc:  # noqa: BLE001 - a bad clip fails alone
            return Failed(clip_id, failure_reason(exc), "load/describe")
        if work.pending and self._background is not None:
            work.future = self._background.submit(self.labeler.resolve(work, self._background.session))
        return work

    def _resolve(self, work: ClipWork) -> bool:
        """Wait for the clip's asynchronous stage; False (and the clip recorded as failed) if it failed."""
        if not work.pending:
            return True
        try:
            assert work.future is not None, "a pending clip without a session"
            work.future.result()
        except Exception as exc:  # noqa: BLE001
            # the requests answered before the failure were paid for: their usage goes in the record
            self._fail(work.clip.id, failure_reason(exc), self.labeler.async_stage, self.labeler.failure_record(work))
            return False
        work.pending = False
        return True

    def _finish(self, works: list[ClipWork]) -> None:
        """Run the batched stage and write; a failing batch is redone clip by clip so only the clip at
        fault is recorded as failed."""
        try:
            results = self.labeler.finish(works)
        except Exception as exc:  # noqa: BLE001 - a model error fails its clip, not the job
            if len(works) == 1:
                extra = self.labeler.failure_record(works[0])
                self._fail(works[0].clip.id, failure_reason(exc), "ground/segment", extra)
                return
            for work in works:
                self._finish([work])
            return
        for work, result in zip(works, results, strict=True):
            labels = Labels(*result)
            try:
                self.stats.records.append(self.writer.write(work.clip, labels.masks, labels.record, labels.classes))
            except Exception as exc:  # noqa: BLE001
                self._fail(work.clip.id, failure_reason(exc), "write", self.labeler.failure_record(work))
                continue
            self._done()

    # -- the job

    def run(self) -> RunStats:
        """Label every pending clip; returns this run's stats (the store's manifest holds every record)."""
        from tqdm.auto import tqdm

        all_ids = self.source.ids
        ids = self.writer.pending(all_ids)
        self.stats.clips_skipped = sum(1 for c in all_ids if self.writer.owns(c)) - len(ids)
        if self.limit is not None:
            ids = ids[: int(self.limit)]
        name = getattr(self.labeler, "name", type(self.labeler).__name__)
        self._bar = tqdm(total=len(ids), desc=f"labeling ({name})", unit="clip", disable=not self.progress,
                         dynamic_ncols=True)
        start = time.perf_counter()
        try:
            if ids:
                self.labeler.load_models()
                session = self.labeler.open_session()
                self._background = BackgroundLoop(session) if session is not None else None
                try:
                    self._run_overlapped(ids) if self.overlap else self._run_serial(ids)
                finally:
                    if self._background is not None:
                        self._background.close()
        finally:
            self.stats.seconds = time.perf_counter() - start
            self._bar.close()
        return self.stats

    def _run_serial(self, ids: list[str]) -> None:
        for clip_id in ids:
            self._slots.acquire()
            work = self._prepare(clip_id)
            if isinstance(work, Failed):
                self._fail(work.clip_id, work.reason, work.stage)
            elif self._resolve(work):
                self._finish([work])

    def _run_overlapped(self, ids: list[str]) -> None:
        handoff: queue.Queue = queue.Queue(maxsize=self.max_in_flight)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for clip_id in ids:
                    while not self._slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    if stop.is_set() or not put(self._prepare(clip_id)):
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                put(exc)
            finally:
                put(_DONE)

        producer = threading.Thread(target=produce, name="labeler-prepare", daemon=True)
        producer.start()
        waiting: deque[Any] = deque()
        produced_all = False

        def take(block: bool) -> None:
            """Move one item from the hand-off queue to ``waiting`` (if there is one)."""
            nonlocal produced_all
            try:
                item = handoff.get(timeout=0.1) if block else handoff.get_nowait()
            except queue.Empty:
                return
            if item is _DONE:
                produced_all = True
            elif isinstance(item, BaseException):
                raise item
            else:
                waiting.append(item)

        try:
            while True:
                while not waiting and not produced_all:
                    take(block=True)
                while not produced_all and not handoff.empty():
                    take(block=False)
                if not waiting:
                    break
                head = waiting.popleft()
                if isinstance(head, Failed):
                    self._fail(head.clip_id, head.reason, head.stage)
                    continue
                if not self._resolve(head):
                    continue
                batch, frames = [head], head.frames
                # Add the clips that are ready now, as long as the frame budget allows.
                while waiting and frames < self.frame_batch:
                    nxt = waiting[0]
                    if isinstance(nxt, Failed):
                        waiting.popleft()
                        self._fail(nxt.clip_id, nxt.reason, nxt.stage)
                        continue
                    if not nxt.ready or frames + nxt.frames > self.frame_batch:
                        break
                    waiting.popleft()
                    if self._resolve(nxt):
                        batch.append(nxt)
                        frames += nxt.frames
                self._finish(batch)
        finally:
            stop.set()
            producer.join(timeout=30)
            for item in waiting:
                if isinstance(item, ClipWork) and item.future is not None:
                    item.future.cancel()


def run_labeler(labeler: Labeler, source: Any, writer: StoreWriter, **options: Any) -> RunStats:
    """Label every clip of ``source`` that ``writer``'s shard still has to do (options: :class:`Runner`)."""
    return Runner(labeler, source, writer, **options).run()
