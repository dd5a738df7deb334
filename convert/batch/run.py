"""Convert a DICOM tree (every series) or one series into output files: plan, then run the jobs.

:func:`convert_dicom_tree` scans the source once (headers only), assembles series, plans one
job per series (:mod:`convert.batch.plan`: names, filters, fingerprints), then runs the jobs
that an earlier run into the same folder did not finish (:mod:`convert.batch.manifest`):

* in this process (``jobs=1``, or a single job),
* in a local pool of worker processes (``jobs=N``; the default is every core), at most N series
  in memory at once, or
* on a Dask distributed cluster (``client=``), the same jobs and the same manifest.

Every job is :func:`run_job`: read the series, de-identify its metadata, apply the processing
steps, write its files atomically (image, JSON sidecar, ``.bval``/``.bvec``). A job's failure is
recorded and the others go on. Outputs depend only on the inputs and the options, not on the
order or the worker: ``jobs=1``, ``jobs=2`` and a cluster write the same bytes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from convert.atomic import check_writable
from convert.batch.manifest import Manifest, hashed_key
from convert.batch.naming import DEFAULT_NAME, NAME_FIELDS, output_suffixes, render_name, sanitize_name
from convert.batch.plan import Job, Plan, make_plan
from convert.batch.report import (Report, SeriesOutcome, deidentified_label, redact_header_text,
                                  redact_series_paths)
from convert.dicom.pixels import check_philips_scaling
from convert.dicom.reader import (deidentified_volume, output_stem, read_series_volumes, read_single,
                                  volume_warnings, write_series_outputs, writes_gradient_files)
from convert.dicom.header import Header
from convert.dicom.scan import ScanResult, scan
from convert.dicom.series import assemble
from convert.errors import ConvertError, NoDicomError, OutputWriteError, spell
from convert.volume import Volume

#: Jobs handed to the local pool ahead of the ones running, per worker: enough to keep workers
#: busy, few enough that a killed run has begun few jobs it did not finish.
_AHEAD_PER_WORKER = 2
#: Modules every job imports on first use (Pillow: the report's thumbnails; the sidecar, preview and
#: geometry steps), imported by a pool run's parent before its workers fork: imported in each worker
#: they would fill the holes of the inherited heap (the scan's instances) and copy those pages into
#: every worker, as well as costing each worker the import. Not pydicom: most archives never need it.
_JOB_MODULES = ("PIL.Image", "PIL.ImageDraw", "PIL.PngImagePlugin", "convert.process.preview",
                "convert.process.geometry", "convert.dicom.ge", "convert.dicom.sidecar")
#: The same for a Dask cluster, whose round trip (client -> scheduler -> worker -> client) is
#: milliseconds: with 2 ahead per worker thread, workers idled between short jobs (measured 1.40x
#: the local pool on 500 series of 100 small slices).
_AHEAD_PER_DASK_THREAD = 8


def _output_extension(fmt: Any) -> str:
    """What a series' output name ends with: the format's first extension ("" for a folder: DICOM)."""
    return fmt.extensions[0] if fmt.extensions and not getattr(fmt, "writes_folder", False) else ""


def default_jobs() -> int:
    """Worker processes by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class JobContext:
    """What every job of one run shares: where and how to write (picklable: it travels to workers).

    Attributes:
        source: the scanned folder (input paths in messages are redacted relative to it).
        out_dir: the output folder.
        to: output format name.
        name: the name template (``{Index}`` is filled per volume).
        overwrite: replace existing outputs.
        sidecar, sidecar_phi: JSON sidecars beside NIfTI outputs, with patient fields or not.
        read_options: ``tilt_correct``, ``allow_gaps``, ``stack_uneven``, ``philips_scaling``, ``workers``.
        deidentify: a function returning a de-identified copy of a header, or None.
        process: processing steps applied to every volume, or None.
        write_options: options of the format's writer.
        planned: every planned stem of the run, lower-cased: a volume postfix must not land on another's.
        thumbnails: draw a thumbnail of each series' first volume for the report
            (:func:`convert.batch.report.write_thumbnail`).
    """

    source: Path
    out_dir: Path
    to: str = "nifti-gz"
    name: str = DEFAULT_NAME
    overwrite: bool = False
    sidecar: bool = True
    sidecar_phi: bool = False
    read_options: dict[str, Any] = field(default_factory=dict)
    deidentify: Callable[[Any], Any] | None = None
    process: Callable[[Volume], Volume] | None = None
    write_options: dict[str, Any] | None = None
    planned: frozenset[str] = frozenset()
    thumbnails: bool = True


def volume_stem(job: Job, ctx: JobContext, v_index: int, n_volumes: int, suffix: str) -> str:
    """The output stem of volume ``v_index`` of ``job``'s series (``n_volumes`` read from it).

    A slice or mosaic series' plan stem already carries its postfix; the volumes of a
    multi-frame series add theirs (``_e2``), or fill ``{Index}`` when the template has it.
    A stem that would equal another job's planned stem gets the job's number appended.
    """
    stem = job.stem
    if "{Index}" in ctx.name and n_volumes > 1:
        plain = render_name(ctx.name, job.fields)
        tail = job.stem[len(plain):] if job.stem.startswith(plain) else ""  # the plan's "_2" for a repeated name
        stem = render_name(ctx.name, {**job.fields, "Index": str(v_index + 1)}) + tail
    if suffix and job.series.kind == "multiframe":
        stem = sanitize_name(f"{stem}_{suffix}")
    if stem != job.stem and stem.lower() in ctx.planned:
        stem = f"{stem}_{job.index + 1}"
    return stem


def run_job(job: Job, ctx: JobContext, replace: bool = False) -> SeriesOutcome:
    """Convert one series: read, de-identify, process, write. Never raises for a bad series.

    ``replace``: the job may replace existing files of its names (an earlier run of the
    same job wrote them). The outcome holds the files written, the warnings and, on
    failure, the error (input paths redacted when de-identifying).
    """
    from convert.formats import get_format

    started = time.perf_counter()
    series = job.series
    fmt = get_format(ctx.to)
    ext = _output_extension(fmt)
    outcome = SeriesOutcome(label=job.label, files=series.paths, info=dict(job.row))
    try:
        volumes = read_series_volumes(series, **ctx.read_options)
        outcome.warnings = list(dict.fromkeys([spell(w) for w in series.warnings]
                                              + [w for v in volumes for w in volume_warnings(v)]))
        suffixes = output_suffixes(series, volumes, indexed="{Index}" in ctx.name)
        for v_index, volume in enumerate(volumes):
            if ctx.deidentify is not None:
                volume = deidentified_volume(volume, series, ctx.deidentify)
            if ctx.process is not None:
                volume = ctx.process(volume)
            stem = volume_stem(job, ctx, v_index, len(volumes), suffixes[v_index])
            outcome.written.extend(write_series_outputs(
                series, volume, fmt, ctx.out_dir / f"{stem}{ext}", overwrite=ctx.overwrite or replace,
                sidecar=ctx.sidecar and writes_gradient_files(fmt), sidecar_phi=ctx.sidecar_phi,
                deidentify=ctx.deidentify, warnings=outcome.warnings, write_options=ctx.write_options))
            if ctx.thumbnails and outcome.thumbnail is None:
                outcome.thumbnail = _thumbnail(volume, ctx.out_dir, stem)
    except ConvertError as exc:
        outcome.error = str(exc)
    except MemoryError:
        outcome.error = f"{series.first.path}: not enough memory to read series {job.label}"
    except Exception as exc:  # a bug in one series must not stop the others
        outcome.error = f"{series.first.path}: unexpected {type(exc).__name__}: {exc}"
    if ctx.deidentify is not None:
        outcome.error = _deidentified_message(outcome.error, job, ctx) if outcome.error else None
        outcome.warnings = [_deidentified_message(w, job, ctx) for w in outcome.warnings]
    outcome.status = "converted" if outcome.error is None else "failed"
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def _deidentified_message(text: str, job: Job, ctx: JobContext) -> str:
    """A message of a de-identified run: no input path, no series label or description from the header."""
    return redact_series_paths(redact_header_text(text, job.series, job.label), job.series, ctx.source)


def _thumbnail(volume: Volume, out_dir: Path, stem: str) -> Path | None:
    """The report's thumbnail of ``volume`` (None when it cannot be drawn: it never fails the series)."""
    from convert.batch.report import write_thumbnail

    try:
        return write_thumbnail(volume, out_dir, stem)
    except Exception:  # a preview problem (odd shape, unwritable folder) must not cost the conversion
        return None


# --------------------------------------------------------------------------- executing a plan
_WORKER_STATE: tuple[Sequence[bytes], Sequence[Any], JobContext, frozenset[int]] | None = None


def _init_pool_worker(jobs: Sequence[bytes], headers: Sequence[Any], ctx: JobContext,
                      replace: frozenset[int]) -> None:
    """Pool initializer: the run's pickled jobs, the headers they refer to, and the context (inherited
    under fork, sent once under spawn); see :func:`_pickled_jobs`."""
    global _WORKER_STATE
    _WORKER_STATE = (jobs, headers, ctx, replace)


def _run_indexed(index: int) -> SeriesOutcome:
    """:func:`run_job` for job ``index`` of the run (in a pool worker): only the index travels.

    The job is unpickled from the bytes the parent made before forking (:func:`_pickled_jobs`): its
    series' instances are new objects of this worker, freed after the job, and the parent's objects
    are never touched (a reference count written in an inherited page copies the page into the
    worker: over a run, every worker would copy the instances of every job it ran). The outcome
    goes back without its input paths (``files``: the parent has them in its plan, :func:`_with_inputs`
    puts them back after the pool), and the memory the job freed goes back to the system.
    """
    assert _WORKER_STATE is not None
    jobs, headers, ctx, replace = _WORKER_STATE
    outcome = _run_released(_unpickled_job(jobs[index], headers), ctx, index in replace)
    outcome.files = []
    return outcome


def _pickled_jobs(jobs: Sequence[Job]) -> tuple[list[bytes], list[Any]]:
    """Each job pickled (about 0.3 kB an input file) for the workers to unpickle (:func:`_run_indexed`),
    and the header views the scan kept (:class:`convert.dicom.header.Header`: enhanced objects, about
    0.1-0.5 MB each), which the pickles refer to by position instead of copying them: a worker opens a
    view of its own over the parent's parsed bytes (inherited, or sent once), freed after the job.
    pydicom Datasets (kept for small archives only) are copied, since reading one changes it."""
    import io
    import pickle

    headers: list[Any] = []

    class _JobPickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if obj.__class__ is Header:
                headers.append(obj)
                return len(headers) - 1
            return None

    blobs = []
    for job in jobs:
        buffer = io.BytesIO()
        _JobPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(job)
        blobs.append(buffer.getvalue())
    return blobs, headers




def _unpickled_job(blob: bytes, headers: Sequence[Any]) -> Job:
    """A job of :func:`_pickled_jobs`: each header a new view (its own caches, freed with the job)
    over the parsed bytes of the one in ``headers``."""
    import io
    import pickle

    class _JobUnpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            make, args = headers[pid].__reduce__()[:2]
            return make(*args)

    return _JobUnpickler(io.BytesIO(blob)).load()


def _run_released(job: Job, ctx: JobContext, replace: bool) -> SeriesOutcome:
    """:func:`run_job`, then the memory its series took handed back to the system
    (:func:`convert.workers.release_freed_memory`): a process converting many series holds at
    most one series' arrays, not the largest one's pages for the rest of the run."""
    from convert.workers import release_freed_memory

    outcome = run_job(job, ctx, replace)
    release_freed_memory()
    return outcome


def _with_inputs(outcome: SeriesOutcome, job: Job) -> SeriesOutcome:
    """``outcome`` (back from a worker without its input paths) with ``job``'s input files.

    Called once the pool has ended: while forked workers share the parent's pages, the parent
    does not touch the per-file objects of the plan (a reference count written is a page copied).
    """
    if not outcome.files:
        outcome.files = job.series.paths
    return outcome


def _execute(jobs: Sequence[Job], ctx: JobContext, replace: frozenset[int], n_workers: int, client: Any,
             begin: Callable[[Job], None]) -> Iterator[tuple[Job, SeriesOutcome]]:
    """Run ``jobs`` (positions in ``jobs`` index ``replace``) and yield each with its outcome as it finishes.

    ``begin(job)`` is called just before a job is handed out. Locally at most
    ``n_workers`` series are in memory at once (one per worker process).
    """
    if client is not None:
        yield from _execute_on_dask(jobs, ctx, replace, client, begin)
        return
    if n_workers <= 1 or len(jobs) <= 1:
        for n, job in enumerate(jobs):
            begin(job)
            yield job, _run_released(job, ctx, n in replace)
        return
    from concurrent.futures import FIRST_COMPLETED, wait

    from convert.workers import process_pool, shared_heap

    _import_job_modules(ctx)
    queue = deque(range(len(jobs)))
    pending: dict[Any, int] = {}
    # the workers fork with the plan (every file's instance): frozen, its pages stay shared
    with shared_heap(), process_pool(min(n_workers, len(jobs)), _init_pool_worker,
                                     (*_pickled_jobs(jobs), ctx, replace)) as pool:
        while queue or pending:
            while queue and len(pending) < n_workers * _AHEAD_PER_WORKER:
                n = queue.popleft()
                begin(jobs[n])
                pending[pool.submit(_run_indexed, n)] = n
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                n = pending.pop(future)
                yield jobs[n], _outcome_of(future, jobs[n])


def _import_job_modules(ctx: JobContext) -> None:
    """Import what the jobs of ``ctx`` will (:data:`_JOB_MODULES`, the output format's adapter) in this
    process, before a fork pool starts: the workers then share those modules' pages with it."""
    import importlib

    from convert.formats import get_format

    get_format(ctx.to)
    for name in _JOB_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part missing: the job that needs it says so
            pass


def run_jobs(jobs: Sequence[Job], ctx: JobContext, replace: Sequence[bool]) -> list[SeriesOutcome]:
    """:func:`run_job` over several jobs in turn: one Dask task (the cluster's per-task cost is
    milliseconds, a small series' conversion not many more)."""
    return [run_job(job, ctx, flag) for job, flag in zip(jobs, replace)]


def dask_tasks(jobs: Sequence[Job], files_per_task: int = 1000, most: int = 32) -> list[list[int]]:
    """Positions of ``jobs`` grouped into Dask tasks, in order: consecutive jobs until a task holds
    ``files_per_task`` input files or ``most`` jobs; a large series is a task of its own."""
    tasks: list[list[int]] = []
    current: list[int] = []
    files = 0
    for n, job in enumerate(jobs):
        if current and (files + job.files > files_per_task or len(current) >= most):
            tasks.append(current)
            current, files = [], 0
        current.append(n)
        files += job.files
    if current:
        tasks.append(current)
    return tasks


def _execute_on_dask(jobs: Sequence[Job], ctx: JobContext, replace: frozenset[int], client: Any,
                     begin: Callable[[Job], None]) -> Iterator[tuple[Job, SeriesOutcome]]:
    """The same jobs on a Dask distributed ``client``: each task runs a few of them (:func:`dask_tasks`,
    :func:`run_jobs`), each job still :func:`run_job` with its own outcome and manifest record."""
    try:
        from distributed import as_completed
    except ImportError:
        raise ConvertError("running on a Dask cluster needs the 'dask' extra: pip install 'medconvert[dask]'") \
            from None
    n_workers = _dask_workers(client)
    queue = deque(dask_tasks(jobs))
    futures: dict[Any, list[int]] = {}

    def submit(task: list[int]) -> Any:
        for n in task:
            begin(jobs[n])
        future = client.submit(run_jobs, [jobs[n] for n in task], ctx, [n in replace for n in task], pure=False,
                               key=f"medconvert-jobs-{task[0]}-{jobs[task[0]].digest[:12]}-{os.getpid()}-"
                                   f"{time.monotonic_ns()}")
        futures[future] = task
        return future

    first = [submit(queue.popleft()) for _ in range(min(len(queue), n_workers * _AHEAD_PER_DASK_THREAD))]
    running = as_completed(first)
    for future in running:
        task = futures.pop(future)
        try:
            outcomes = future.result()
        except Exception as exc:  # the worker was lost: each of its jobs failed, say why
            outcomes = [_outcome_of_lost(jobs[n], exc) for n in task]
        for n, outcome in zip(task, outcomes):
            yield jobs[n], outcome
        if queue:
            running.add(submit(queue.popleft()))


def _dask_workers(client: Any) -> int:
    """How many tasks a Dask client's cluster runs at once (its worker threads)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # a client without the call (or a scheduler gone): hand out a few at a time
        return 2


def _outcome_of(future: Any, job: Job) -> SeriesOutcome:
    """The outcome a finished future holds; a worker that died (killed, out of memory) fails its job only."""
    try:
        return future.result()
    except Exception as exc:  # BrokenProcessPool...: this job failed, say why
        return _outcome_of_lost(job, exc)


def _outcome_of_lost(job: Job, exc: BaseException) -> SeriesOutcome:
    """The failed outcome of a job whose worker stopped (killed, out of memory, a cluster node lost)."""
    return SeriesOutcome(label=job.label, files=job.series.paths, info=dict(job.row), status="failed",
                         error=f"series {job.label}: the worker converting it stopped "
                               f"({type(exc).__name__}: {exc}); rerun to retry it")


def _record(key: str, job: Job, outcome: SeriesOutcome, out_dir: Path) -> dict[str, Any]:
    """The manifest record of a finished job (output names relative to ``out_dir``)."""
    if outcome.ok:
        outputs = []
        for path in outcome.written:
            try:
                outputs.append([str(path.relative_to(out_dir)), os.stat(path).st_size])
            except (OSError, ValueError):
                outputs.append([str(path), -1])
        return {"job": key, "state": "done", "digest": job.digest, "outputs": outputs, "label": outcome.label,
                "warnings": outcome.warnings, "seconds": outcome.seconds, "info": outcome.info,
                "thumbnail": str(outcome.thumbnail.relative_to(out_dir)) if outcome.thumbnail else None}
    return {"job": key, "state": "failed", "digest": job.digest, "error": outcome.error}


def _outcome_from_record(job: Job, record: dict[str, Any], out_dir: Path) -> SeriesOutcome:
    """The outcome of a job an earlier run finished (status ``"done"``): from its manifest record."""
    thumbnail = record.get("thumbnail")
    return SeriesOutcome(label=job.label, files=job.series.paths,
                         written=[out_dir / name for name, _ in record.get("outputs") or []],
                         warnings=list(record.get("warnings") or []), status="done", info=dict(job.row),
                         thumbnail=out_dir / thumbnail if thumbnail else None)


def job_keys(plan: Plan, anonymized: bool) -> list[str]:
    """The manifest key of each job: hashed under the options fingerprint when de-identifying."""
    return [hashed_key(j.key, plan.fingerprint) if anonymized else j.key for j in plan.jobs]


def plan_status(plan: Plan, out_dir: Path, *, anonymized: bool, overwrite: bool = False) -> list[str]:
    """Per job of ``plan``: ``"convert"``, ``"done"`` (an earlier run into ``out_dir`` finished it),
    ``"excluded"`` or ``"refused"`` (by the de-identifier); what ``--dry-run`` shows. Nothing is written."""
    manifest = Manifest.read(out_dir) if out_dir.is_dir() else Manifest(out_dir)
    out = []
    for job, key in zip(plan.jobs, job_keys(plan, anonymized)):
        if job.excluded:
            out.append("excluded")
        elif job.error is not None:
            out.append("refused")
        elif not overwrite and manifest.is_done(key, job.digest, out_dir):
            out.append("done")
        else:
            out.append("convert")
    return out


def run_plan(plan: Plan, ctx: JobContext, *, jobs: int | None = None, client: Any = None,
             progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Run the jobs of ``plan`` that are not done yet into ``ctx.out_dir``; see :func:`convert_dicom_tree`.

    ``progress(done, total, text)`` is called as jobs finish (``text``: the series label, failures
    so far, input files per second).
    """
    out_dir = ctx.out_dir
    anonymized = ctx.deidentify is not None
    manifest = Manifest.read(out_dir)
    keys = job_keys(plan, anonymized)
    key_of = {job.index: key for job, key in zip(plan.jobs, keys)}
    outcomes: dict[int, SeriesOutcome] = {}
    todo: list[Job] = []
    for job, key in zip(plan.jobs, keys):
        if job.excluded:
            outcomes[job.index] = SeriesOutcome(label=job.label, files=job.series.paths, status="excluded",
                                                info=dict(job.row))
        elif job.error is not None:  # failed when planned (refused by the de-identifier)
            error = _deidentified_message(job.error, job, ctx) if anonymized else job.error
            outcomes[job.index] = SeriesOutcome(label=job.label, files=job.series.paths, status="failed",
                                                error=error, info=dict(job.row))
        elif not ctx.overwrite and manifest.is_done(key, job.digest, out_dir):
            outcomes[job.index] = _outcome_from_record(job, manifest.records[key], out_dir)
        else:
            todo.append(job)
    replace = frozenset(n for n, job in enumerate(todo) if manifest.owns(key_of[job.index]))
    n_workers = jobs if jobs and jobs > 0 else default_jobs()
    if n_workers > 1 and len(todo) > 1 and client is None:  # the workers share the cores
        ctx.read_options.setdefault("workers", max(1, default_jobs() // min(n_workers, len(todo))))
    started_at = datetime.now(timezone.utc)
    started, files_done, failures = time.perf_counter(), 0, 0
    total = len(todo)
    n_files = {job.index: job.files for job in todo}  # counted before the pool: see _with_inputs
    manifest.open()
    try:
        begin = (lambda job: manifest.append({"job": key_of[job.index], "state": "begun"}))
        for n, (job, outcome) in enumerate(_execute(todo, ctx, replace, n_workers, client, begin), 1):
            manifest.append(_record(key_of[job.index], job, outcome, out_dir))
            outcomes[job.index] = outcome
            files_done += n_files[job.index]
            failures += not outcome.ok
            if progress:
                rate = files_done / max(time.perf_counter() - started, 1e-6)
                progress(n, total, f"{job.label} · {failures} failed · {rate:,.0f} files/s" if failures
                         else f"{job.label} · {rate:,.0f} files/s")
    finally:
        manifest.close()
    for job in todo:
        _with_inputs(outcomes[job.index], job)
    return Report(source=plan.source, outcomes=[outcomes[i] for i in sorted(outcomes)],
                  skipped=list(plan.skipped), duplicates=list(plan.duplicates), out_dir=out_dir,
                  started=started_at, finished=datetime.now(timezone.utc),
                  seconds=round(time.perf_counter() - started, 3),
                  jobs=1 if client is None and (n_workers <= 1 or len(todo) <= 1) else
                  (min(n_workers, len(todo)) if client is None else _dask_workers(client)))


def plan_dicom_tree(src_dir: str | Path, *, name: str = DEFAULT_NAME, deidentify: Callable[[Any], Any] | None = None,
                    include: Sequence[str] = (), exclude: Sequence[str] = (), options: dict[str, Any] | None = None,
                    progress: Callable[[int, int, str], None] | None = None) -> Plan:
    """Scan ``src_dir`` (a folder, DICOMDIR or ``.zip``/``.tar`` archive; headers only) and plan one job
    per series; nothing is written. The jobs' files are gone once this returns for an archive (it
    was extracted into a temporary folder): the plan is for looking at (``--dry-run``).

    Raises:
        InputNotFoundError: ``src_dir`` does not exist.
        NoDicomError: no DICOM image under ``src_dir``.
        ConvertError: a bad name template or filter expression, an unsafe archive.
    """
    from convert.batch.sources import open_source

    with open_source(src_dir) as source:
        return plan_source(source, name=name, deidentify=deidentify, include=include, exclude=exclude,
                           options=options, progress=progress)


def plan_source(source: Any, *, name: str = DEFAULT_NAME, deidentify: Callable[[Any], Any] | None = None,
                include: Sequence[str] = (), exclude: Sequence[str] = (), options: dict[str, Any] | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> Plan:
    """:func:`plan_dicom_tree` of an opened :class:`convert.batch.sources.Source` (every root scanned:
    the input and the archives in it); skipped files are named as the source displays them."""
    render_name(name, {k: "x" for k in NAME_FIELDS})  # validate the template before any work
    if deidentify is None and "{Pseudonym}" in name:
        raise ConvertError("the name field {Pseudonym} exists only with --anonymize")
    instances, skipped, done = [], [], 0
    left_out = {label for label, _ in source.problems}
    for root in source.roots:
        offset = done
        scan_progress = ((lambda n, total: progress(offset + n, offset + total, "scanning files"))
                         if progress else None)
        # walked once; the listing is used once: taken from the source, its paths are freed after the scan
        # (the instances hold their own; a 20,000-file listing is about 8 MB for the rest of the run)
        result: ScanResult = scan(root, progress=scan_progress, listing=source.listings.pop(root, None))
        done += result.files_seen
        instances.extend(result.instances)
        skipped.extend((p if not source.is_archive and p.is_relative_to(source.origin) else Path(source.display(p)),
                        reason) for p, reason in result.skipped
                       if p not in source.expanded and source.display(p) not in left_out)
    skipped.extend((Path(label), reason) for label, reason in source.problems)
    if not instances:
        raise NoDicomError(source.origin, len(skipped), skipped[0][1] if skipped else None)
    all_series = assemble(instances)
    return make_plan(source.root, all_series, name=name, options={**(options or {}), "name": name,
                                                                  "deidentify": deidentify},
                     deidentify=deidentify, include=include, exclude=exclude, skipped=skipped,
                     duplicates=[p for s in all_series for p in s.duplicates], reserved=("report",),
                     name_of=source.name)


def convert_dicom_tree(src_dir: str | Path, out_dir: str | Path, *, to: str = "nifti-gz",
                       name: str = DEFAULT_NAME, overwrite: bool = False, sidecar: bool = True,
                       sidecar_phi: bool = False, tilt_correct: bool = False, allow_gaps: bool = False,
                       stack_uneven: bool = False, philips_scaling: str = "precise",
                       progress: Callable[[int, int, str], None] | None = None,
                       deidentify: Callable[[Any], Any] | None = None,
                       process: Callable[[Volume], Volume] | None = None,
                       write_options: dict[str, Any] | None = None, jobs: int | None = None,
                       client: Any = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
                       reports: bool = True, dry_run: bool = False) -> Report:
    """Convert every series under ``src_dir`` into ``out_dir`` (one file per volume).

    With ``deidentify`` (a function returning a de-identified copy of a pydicom
    Dataset, e.g. a :class:`convert.anonymize.Deidentifier`), output names,
    sidecars, metadata, series labels, warnings and error messages are all
    derived from de-identified headers, with input file paths redacted; a
    series the de-identifier refuses (burned-in text) fails with its message.

    Each series is one job, isolated: a failure is recorded in the report and the others
    still convert. Diffusion series also get FSL ``.bval``/``.bvec`` files
    (with NIfTI output). An output that already exists fails its series
    (:class:`~convert.errors.OutputExistsError`) unless ``overwrite`` or an earlier run of the
    same job wrote it. NIfTI outputs get a BIDS-style JSON sidecar (no PHI unless
    ``sidecar_phi``). Output names come from ``name`` (fields from
    :data:`NAME_FIELDS`), sanitised; collisions get ``_2``, ``_3``... suffixes, decided in
    series order before any job runs.
    ``philips_scaling`` (``"precise"``, the default, or ``"display"``) picks the
    values of Philips MR series, see :class:`convert.dicom.reader.ReadOptions`; the sidecar records it.
    ``process`` (a :class:`convert.process.Pipeline`) is applied to each volume before
    it is written; the sidecar records its steps.
    ``write_options`` go to the format's writer (DICOM output: ``modality``, ``template``, ``enhanced``).

    **Parallel**: ``jobs`` worker processes (default: every core; 1 runs in this process),
    or the workers of a Dask ``client`` (:class:`distributed.Client`). Outputs are the same
    bytes whichever runs them.

    **Resume**: ``out_dir/.medconvert/manifest.jsonl`` records each finished job with a
    digest of its inputs and options; a rerun skips finished jobs whose outputs are in place
    (status ``"done"`` in the report) and redoes the others. A killed run leaves only complete
    files under final names (each written to a temporary name and renamed).

    **Report**: ``reports`` (default True) writes ``out_dir/report.json`` and ``report.html``
    (:func:`convert.batch.report.write_report`: every series with its status, outputs,
    warnings or error, a thumbnail, totals and timings; nothing identifying when de-identifying).

    **Archives**: ``src_dir`` may be a ``.zip`` or ``.tar(.gz)`` archive, and zips inside the folder
    or archive are read too (:mod:`convert.batch.sources`: extracted into a temporary folder, unsafe
    members refused); messages name members as ``exam.zip!CT/IM0001``. On a Dask cluster the
    temporary folder must be one the workers see (set ``TMPDIR`` to a shared folder).

    **Dry run**: ``dry_run`` plans and writes nothing (``out_dir`` is not created): the report's
    outcomes then have status ``"convert"``, ``"done"`` (an earlier run finished it), ``"excluded"``
    or ``"refused"`` (by the de-identifier, with its reason), and ``info["output"]`` is the
    planned output name (volumes of a multi-frame file add their postfixes).

    **Filters**: ``include``/``exclude`` expressions over the index fields
    (:func:`convert.batch.plan.parse_filter`, e.g. ``"modality=CT"``); excluded series are
    reported with status ``"excluded"``.

    Raises:
        InputNotFoundError: ``src_dir`` does not exist.
        DicomError: no DICOM image at all under ``src_dir``.
        ConvertError: bad output format, name template or filter, or ``out_dir`` is not a folder.
    """
    from convert.formats import get_format

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    fmt = get_format(to)
    if not fmt.can_write:
        raise ConvertError(f"format '{fmt.name}' can be read but not written")
    check_philips_scaling(philips_scaling)
    if deidentify is not None and sidecar_phi:
        raise ConvertError("a de-identified conversion cannot write patient fields to sidecars: "
                           "drop --sidecar-phi or --anonymize")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConvertError("output must be a folder when converting a DICOM tree", out_dir)
    read_options = {"tilt_correct": tilt_correct, "allow_gaps": allow_gaps, "stack_uneven": stack_uneven,
                    "philips_scaling": philips_scaling}
    from convert.batch.sources import open_source

    with open_source(src_dir) as source:  # an archive: extracted into a temporary folder for the run
        ctx = JobContext(source=source.root, out_dir=out_dir, to=to, name=name, overwrite=overwrite,
                         sidecar=sidecar, sidecar_phi=sidecar_phi, read_options=read_options, deidentify=deidentify,
                         process=process, write_options=write_options, thumbnails=reports)
        plan = plan_source(source, name=name, deidentify=deidentify, include=include, exclude=exclude,
                           options=job_options(ctx), progress=progress)
        if dry_run:
            return _planned_report(plan, src_dir, out_dir, anonymized=deidentify is not None, overwrite=overwrite)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot create the output folder ({exc.strerror}): choose a folder you can "
                                   "write to", out_dir) from None
        ctx.planned = frozenset(j.stem.lower() for j in plan.jobs if j.stem)
        report = run_plan(plan, ctx, jobs=jobs, client=client, progress=progress)
        report.source = src_dir
        if source.is_archive or source.expanded:  # messages name archive members, not the temporary folder
            for outcome in report.outcomes:
                outcome.error = source.relabel(outcome.error) if outcome.error else outcome.error
                outcome.warnings = [source.relabel(w) for w in outcome.warnings]
    if reports:
        from convert.batch.report import write_report

        write_report(report, out_dir, anonymized=deidentify is not None)
    if progress:
        progress(len(plan.jobs), len(plan.jobs), "done")
    return report


def _planned_report(plan: Plan, source: Path, out_dir: Path, *, anonymized: bool, overwrite: bool) -> Report:
    """What a dry run returns: one outcome per job with its planned status (:func:`plan_status`)."""
    status = plan_status(plan, out_dir, anonymized=anonymized, overwrite=overwrite)
    outcomes = [SeriesOutcome(label=job.label, files=job.series.paths, status=state,
                              info={**job.row, "output": job.stem}, error=job.error if state == "refused" else None)
                for job, state in zip(plan.jobs, status)]
    return Report(source=source, outcomes=outcomes, skipped=list(plan.skipped), duplicates=list(plan.duplicates),
                  out_dir=out_dir)


def job_options(ctx: JobContext) -> dict[str, Any]:
    """The options of ``ctx`` that decide output bytes (hashed into every job's digest)."""
    return {"to": ctx.to, "sidecar": ctx.sidecar, "sidecar_phi": ctx.sidecar_phi,
            "read": dict(ctx.read_options), "process": ctx.process, "write": ctx.write_options}


def convert_dicom_file(src: str | Path, dst: str | Path, *, to: str | None = None, overwrite: bool = False,
                       sidecar: bool = True, sidecar_phi: bool = False,
                       deidentify: Callable[[Any], Any] | None = None, tilt_correct: bool = False,
                       allow_gaps: bool = False, stack_uneven: bool = False,
                       philips_scaling: str = "precise",
                       process: Callable[[Volume], Volume] | None = None,
                       write_options: dict[str, Any] | None = None) -> tuple[SeriesOutcome, list[Path]]:
    """Convert the one series of a DICOM file or folder to the single file ``dst``.

    Writes what a series gets in :func:`convert_dicom_tree`, beside ``dst``: the
    image, a BIDS-style JSON sidecar (NIfTI outputs, unless ``sidecar=False``; no
    PHI unless ``sidecar_phi``) and FSL ``.bval``/``.bvec`` for a diffusion series
    (``dwi.nii.gz`` -> ``dwi.json``, ``dwi.bval``, ``dwi.bvec``). Every output is
    checked before the series is read.

    Returns:
        The :class:`SeriesOutcome` (files written, image first, and warnings: tilt,
        gaps, uneven spacing, a diffusion series without a usable table...) and the
        input files skipped as duplicates (same SOPInstanceUID and bytes as another).

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False.
        DicomError: no DICOM image, several series or volumes (give an output folder), ...
    """
    from convert.formats import format_for_output

    src, dst = Path(src), Path(dst)
    fmt = format_for_output(dst, to)
    if deidentify is not None and sidecar_phi:
        raise ConvertError("a de-identified conversion cannot write patient fields to sidecars: "
                           "drop sidecar_phi or deidentify")
    stem = output_stem(dst, fmt)
    nifti = writes_gradient_files(fmt)
    early = ([stem.with_name(stem.name + ".json")] if sidecar and nifti else [])
    check_writable(list(fmt.output_paths(dst)) + early, overwrite)  # fail fast, before reading
    from convert.batch.sources import open_source

    with open_source(src) as source:  # a .zip/.tar holding one series: read from its extraction
        try:
            volume, series = read_single(source.root, listing=source.listings.get(source.root),
                                         tilt_correct=tilt_correct, allow_gaps=allow_gaps,
                                         stack_uneven=stack_uneven, philips_scaling=philips_scaling)
            if deidentify is not None:
                volume = deidentified_volume(volume, series, deidentify)  # also refuses burned-in text
            if process is not None:
                volume = process(volume)  # convert.process steps; the sidecar records them
            outcome = SeriesOutcome(label=series.label if deidentify is None else deidentified_label(series),
                                    files=series.paths, warnings=volume_warnings(volume))
            outcome.written = write_series_outputs(series, volume, fmt, dst, overwrite=overwrite, sidecar=sidecar,
                                                    sidecar_phi=sidecar_phi, deidentify=deidentify,
                                                    warnings=outcome.warnings, write_options=write_options)
        except ConvertError as exc:
            if source.is_archive:  # name the archive's members, not the temporary folder
                exc.args = (source.relabel(str(exc.args[0])),)
                exc.message = source.relabel(exc.message)
                exc.path = Path(source.relabel(str(exc.path))) if exc.path is not None else None
            raise
        outcome.warnings = [source.relabel(w) for w in outcome.warnings]
    return outcome, list(series.duplicates)
