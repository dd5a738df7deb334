"""convert.batch.run: archive runs in one process, a local pool and on Dask; resume; kills; filters."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import convert
from convert.atomic import TEMPORARY_NAME
from convert.batch import convert_dicom_tree
from convert.batch.manifest import MANIFEST_NAME, STATE_DIR
from convert.errors import ConvertError
from fixtures.dicom_series import make_series, truncate_file

ROOT = Path(__file__).resolve().parents[1]


def make_archive(root: Path, n_series: int = 6, slices: int = 12, rows: int = 48, columns: int = 40) -> dict[str, Path]:
    """``n_series`` small CT/MR series in patient folders; returns each series' folder by description."""
    folders = {}
    for n in range(n_series):
        modality = "CT" if n % 2 == 0 else "MR"
        folder = root / f"patient{n % 3}" / f"series{n}"
        make_series(folder, ["axial", "sagittal", "coronal", "oblique"][n % 4], slices=slices, rows=rows,
                    columns=columns,
                    modality=modality, series_number=n + 1, description=f"{modality} series {n}",
                    series_uid=f"1.2.826.0.1.3680043.10.1234.{n + 1}", study_uid=f"1.2.826.0.1.3680043.10.99.{n % 3}")
        folders[f"{modality} series {n}"] = folder
    return folders


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file and its bytes (the run's record and report excluded: they hold timings)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and STATE_DIR not in p.relative_to(out).parts
            and p.name not in ("report.json", "report.html")}


def test_one_process_and_a_pool_write_the_same_bytes_with_reproducible_gzip(tmp_path: Path) -> None:
    make_archive(tmp_path / "in")
    serial = convert_dicom_tree(tmp_path / "in", tmp_path / "one", jobs=1)
    pooled = convert_dicom_tree(tmp_path / "in", tmp_path / "two", jobs=2)
    assert serial.ok and pooled.ok and len(serial.outcomes) == 6
    assert [o.status for o in pooled.outcomes] == ["converted"] * 6
    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert one == two and len([n for n in one if n.endswith(".nii.gz")]) == 6
    for name, data in one.items():
        if name.endswith(".gz"):  # gzip header: no file name flag, modification time 0
            assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\0\0\0\0", name


def test_each_series_lands_where_its_headers_say(tmp_path: Path) -> None:
    from convert.sample import expected_affine_ras
    from fixtures.dicom_series import small_spec

    make_archive(tmp_path / "in", n_series=4)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    for n, outcome in enumerate(report.outcomes):
        image = nib.load(outcome.written[0])
        spec = small_spec(["axial", "sagittal", "coronal", "oblique"][n], slices=12, rows=48, columns=40)
        np.testing.assert_allclose(image.affine, expected_affine_ras(spec), atol=1e-4)


def test_a_rerun_skips_finished_jobs_and_redoes_changed_ones(tmp_path: Path) -> None:
    folders = make_archive(tmp_path / "in", n_series=4)
    first = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    times = {p: p.stat().st_mtime_ns for p in first.written}
    again = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    assert [o.status for o in again.outcomes] == ["done"] * 4 and again.ok
    assert {p: p.stat().st_mtime_ns for p in first.written} == times
    assert sorted(again.written) == sorted(first.written)
    # one input changes (new time stamp): only its series is redone, into the same names
    changed = sorted(folders["MR series 1"].iterdir())[0]
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    third = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    assert [o.status for o in third.outcomes] == ["done", "converted", "done", "done"]
    assert sorted(third.written) == sorted(first.written)
    # other options are other outputs: every job is redone, and may replace its own files
    fourth = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=1, sidecar=False)
    assert [o.status for o in fourth.outcomes] == ["converted"] * 4 and fourth.ok


def test_a_failed_series_is_reported_and_retried_while_the_others_are_written(tmp_path: Path) -> None:
    folders = make_archive(tmp_path / "in", n_series=3)
    victim = sorted(folders["MR series 1"].iterdir())[4]
    original = victim.read_bytes()
    truncate_file(victim, 600)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    assert [o.status for o in report.outcomes] == ["converted", "failed", "converted"]
    assert "MR series 1" in report.outcomes[1].label and report.outcomes[1].error
    victim.write_bytes(original)  # repaired: the rerun converts only the failed series
    again = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2)
    assert [o.status for o in again.outcomes] == ["done", "converted", "done"]


def test_include_and_exclude_pick_series_by_index_fields(tmp_path: Path) -> None:
    make_archive(tmp_path / "in", n_series=4)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", include=["modality=CT"],
                                exclude=["series_description=*2"])
    assert [o.status for o in report.outcomes] == ["converted", "excluded", "excluded", "excluded"]
    assert [p.name for p in report.written] == ["1_CT_series_0.nii.gz", "1_CT_series_0.json"]


def test_an_anonymized_run_keeps_no_uid_or_header_text_in_its_record(tmp_path: Path) -> None:
    from convert.anonymize.deidentifier import Deidentifier

    make_archive(tmp_path / "in", n_series=2)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", deidentify=Deidentifier(b"k" * 32),
                                name="{Pseudonym}_{SeriesNumber}_{Modality}")
    assert report.ok
    record = (tmp_path / "out" / STATE_DIR / MANIFEST_NAME).read_text()
    reports = (tmp_path / "out" / "report.json").read_text() + (tmp_path / "out" / "report.html").read_text()
    for secret in ("1.2.826.0.1.3680043.10", "series 0", "series 1", str(tmp_path / "in"), "patient0"):
        assert secret not in record and secret not in reports
    again = convert_dicom_tree(tmp_path / "in", tmp_path / "out", deidentify=Deidentifier(b"k" * 32),
                               name="{Pseudonym}_{SeriesNumber}_{Modality}")
    assert [o.status for o in again.outcomes] == ["done", "done"]
    other_key = convert_dicom_tree(tmp_path / "in", tmp_path / "out2", deidentify=Deidentifier(b"j" * 32),
                                   name="{Pseudonym}_{SeriesNumber}_{Modality}")
    assert {p.name for p in other_key.written}.isdisjoint({p.name for p in report.written})


def test_the_cli_says_completed_with_failures_in_its_exit_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from convert.cli import app
    from convert.errors import EXIT_COMPLETED_WITH_FAILURES

    folders = make_archive(tmp_path / "in", n_series=2)
    truncate_file(sorted(folders["MR series 1"].iterdir())[2], 500)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--jobs", "2"])
    assert result.exit_code == EXIT_COMPLETED_WITH_FAILURES == 3, result.output
    assert "completed with failures" in result.output
    dry = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "plan"), "--dry-run",
                                   "--include", "modality=MR"])
    assert dry.exit_code == 0 and not (tmp_path / "plan").exists()
    assert "1 to convert, 0 done by an earlier run, 1 excluded" in " ".join(dry.output.split())
    bad = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "x"), "--include", "colour=red"])
    assert bad.exit_code == 1 and "unknown field 'colour'" in bad.output


def _start(src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "convert", "convert", str(src), str(out), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)


def _complete_and_loadable(out: Path) -> None:
    """Every file under a final name is whole: each NIfTI loads with all its voxels, each JSON parses.
    (Temporary files of killed writers have names of their own, removed by the next run.)"""
    for path in out.iterdir() if out.exists() else ():
        if TEMPORARY_NAME.match(path.name):
            continue
        if path.name.endswith(".nii.gz"):
            assert np.asarray(nib.load(path).dataobj).size > 0, path
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_ten_sigkills_then_reruns_end_with_the_uninterrupted_outputs(tmp_path: Path) -> None:
    """Each run is killed (SIGKILL, no clean-up possible) at a random moment after it finished a job
    and before it finished all: no partial file under a final name, finished jobs never redone,
    and the last rerun ends with exactly the files of an uninterrupted run."""
    make_archive(tmp_path / "in", n_series=16, slices=40, rows=192, columns=160)
    reference = convert_dicom_tree(tmp_path / "in", tmp_path / "ref", jobs=2)
    assert reference.ok
    out, rng, kills = tmp_path / "out", random.Random(15), 0
    for _ in range(10):
        before = _finished_outputs(out)
        process = _start(tmp_path / "in", out)
        deadline = time.monotonic() + 120
        while process.poll() is None and len(_finished_outputs(out)) <= len(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        kills += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        time.sleep(0.1)  # the workers die with it (PR_SET_PDEATHSIG)
        _complete_and_loadable(out)
        for path, stamp in before.items():  # what an earlier run finished was not redone
            assert path.stat().st_mtime_ns == stamp, path
    assert kills >= 3  # most runs really were killed mid-way
    final = convert_dicom_tree(tmp_path / "in", out, jobs=2)
    assert final.ok and all(o.status in ("done", "converted") for o in final.outcomes)
    assert outputs(out) == outputs(tmp_path / "ref")  # no partial file, no duplicate, same bytes
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != STATE_DIR]


def _finished_outputs(out: Path) -> dict[Path, int]:
    """Outputs of the jobs the manifest records as done, with their modification times."""
    path = out / STATE_DIR / MANIFEST_NAME
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines()[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("state") == "done":
            for name, _ in record["outputs"]:
                found[out / name] = (out / name).stat().st_mtime_ns
    return found


def test_a_dask_local_cluster_writes_the_same_bytes_as_local_processes(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")

    make_archive(tmp_path / "in", n_series=4)
    local = convert_dicom_tree(tmp_path / "in", tmp_path / "local", jobs=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        on_dask = convert_dicom_tree(tmp_path / "in", tmp_path / "dask", client=client)
        again = convert_dicom_tree(tmp_path / "in", tmp_path / "dask", client=client)
        from typer.testing import CliRunner

        from convert.cli import app

        cli = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "cli"), "--scheduler",
                                       cluster.scheduler_address])
    assert local.ok and on_dask.ok
    assert outputs(tmp_path / "local") == outputs(tmp_path / "dask") == outputs(tmp_path / "cli")
    assert cli.exit_code == 0, cli.output
    assert [o.status for o in again.outcomes] == ["done"] * 4


def test_the_shared_conformance_folder_converts_as_one_archive_with_every_series_accounted_for(tmp_path: Path) -> None:
    """All of ../shared/conformance in one run (--jobs 2): each planned series has an outcome, converted or
    failed with a reason, and every file is either in a series, skipped with a reason, or a duplicate."""
    from tests.conftest import CONFORMANCE, conformance_dir

    conformance_dir("dcm_qa_nih")  # skip cleanly without ../shared
    from convert.batch.run import plan_dicom_tree

    plan = plan_dicom_tree(CONFORMANCE)
    report = convert_dicom_tree(CONFORMANCE, tmp_path / "out", jobs=2)
    assert len(report.outcomes) == len(plan.jobs) >= 20
    assert all(o.status == "converted" and o.written or o.status == "failed" and o.error for o in report.outcomes)
    in_series = {p for o in report.outcomes for p in o.files}
    skipped = {p for p, reason in report.skipped if reason}
    every_file = {p for p in CONFORMANCE.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert every_file == in_series | skipped | set(report.duplicates)
    assert report.ok  # the shared sets all convert


def test_ctrl_c_stops_the_pool_says_how_to_resume_and_the_rerun_completes(tmp_path: Path) -> None:
    make_archive(tmp_path / "in", n_series=10, slices=40, rows=192, columns=160)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "convert", "convert", str(tmp_path / "in"), str(out),
                                "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and not _finished_outputs(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.poll() is not None:
        pytest.skip("the run finished before Ctrl-C could reach it (machine too fast for this check)")
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err
    _complete_and_loadable(out)
    report = convert_dicom_tree(tmp_path / "in", out, jobs=2)
    assert report.ok and "done" in [o.status for o in report.outcomes]
    assert not [p for p in out.iterdir() if TEMPORARY_NAME.match(p.name)]


def test_the_generated_archive_converts_its_good_series_and_reports_each_bad_one(tmp_path: Path) -> None:
    """fixtures/make_archive: 3 patients, CT and MR, a missing slice, a truncated file, a non-DICOM file,
    a zip inside. One command: the good series (the zip's too) converted, the bad ones failed with their
    reason, the non-DICOM file skipped, exit code "completed with failures"; a rerun redoes nothing;
    the same run with --anonymize leaves no identifying value in any output, report or record."""
    from typer.testing import CliRunner

    from convert.cli import app
    from convert.errors import EXIT_COMPLETED_WITH_FAILURES
    from fixtures.make_archive import make_archive
    from fixtures.phi_corpus import LeakScanner

    archive = make_archive(tmp_path / "archive")
    result = CliRunner().invoke(app, ["convert", str(archive.root), str(tmp_path / "out"), "--jobs", "2"])
    assert result.exit_code == EXIT_COMPLETED_WITH_FAILURES, result.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    by_description = {s["info"]["series_description"]: s for s in doc["series"]}
    expected = archive.expected(include_zip=True)
    assert len(doc["series"]) == len(expected) and any(s.in_zip for s in expected)
    for series in expected:
        entry = by_description[series.description]
        assert entry["status"] == series.outcome, (series.description, entry["error"])
        if series.outcome == "failed":
            assert series.reason in entry["error"] and not entry["outputs"]
        else:
            image = nib.load(tmp_path / "out" / entry["outputs"][0])
            np.testing.assert_allclose(image.affine, _expected_affine(archive, series), atol=1e-4)
    zip_entries = [by_description[s.description] for s in expected if s.in_zip]
    assert all(e["status"] == "converted" for e in zip_entries)
    assert any(archive.non_dicom.name in p for e in doc["skipped"] for p in e["paths"])
    again = CliRunner().invoke(app, ["convert", str(archive.root), str(tmp_path / "out"), "--jobs", "2"])
    assert again.exit_code == EXIT_COMPLETED_WITH_FAILURES
    assert f"{len(archive.converted(include_zip=True))} series already converted" in again.output
    anonymized = CliRunner().invoke(app, ["convert", str(archive.root), str(tmp_path / "anon"), "--anonymize",
                                          "--jobs", "2"], env={"MEDCONVERT_KEY": "k" * 32})
    assert anonymized.exit_code == EXIT_COMPLETED_WITH_FAILURES, anonymized.output
    scanner = LeakScanner(archive.tokens())
    leaks = scanner.scan_text(anonymized.output)
    for path in (tmp_path / "anon").rglob("*"):
        if path.is_file():
            leaks += scanner.scan_path(path.relative_to(tmp_path / "anon"))
            data = path.read_bytes()
            leaks += scanner.scan_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    assert not leaks, leaks[:10]


def _expected_affine(archive, series) -> np.ndarray:
    from convert.sample import expected_affine_ras

    return expected_affine_ras(archive.specs[series])


def test_a_zip_archive_converts_in_place_resumes_and_names_its_members(tmp_path: Path) -> None:
    import zipfile

    folders = make_archive(tmp_path / "in", n_series=3)
    truncate_file(sorted(folders["MR series 1"].iterdir())[3], 700)
    exam = tmp_path / "exam.zip"
    with zipfile.ZipFile(exam, "w") as zf:
        for path in sorted((tmp_path / "in").rglob("*.dcm")):
            zf.write(path, path.relative_to(tmp_path / "in").as_posix())
    before = exam.read_bytes()
    first = convert_dicom_tree(exam, tmp_path / "out", jobs=2)
    assert [o.status for o in first.outcomes] == ["converted", "failed", "converted"]
    assert "exam.zip!patient1/series1/" in (first.outcomes[1].error or "")  # the member, not a temporary path
    assert "medconvert-source-" not in (first.outcomes[1].error or "")
    again = convert_dicom_tree(exam, tmp_path / "out", jobs=2)  # same members, same times: resumed
    assert [o.status for o in again.outcomes] == ["done", "failed", "done"]
    assert exam.read_bytes() == before  # the input is never modified


def test_a_zip_holding_one_series_converts_to_one_file_in_the_right_place(tmp_path: Path) -> None:
    import zipfile

    from convert.sample import expected_affine_ras
    from fixtures.dicom_series import small_spec

    make_series(tmp_path / "in", "oblique", slices=7)
    exam = tmp_path / "exam.zip"
    with zipfile.ZipFile(exam, "w") as zf:
        for path in sorted((tmp_path / "in").iterdir()):
            zf.write(path, f"study/{path.name}")
    written = convert.convert(exam, tmp_path / "ct.nii.gz")
    assert [p.name for p in written] == ["ct.nii.gz", "ct.json"]
    np.testing.assert_allclose(nib.load(tmp_path / "ct.nii.gz").affine,
                               expected_affine_ras(small_spec("oblique", slices=7)), atol=1e-4)
    bad = tmp_path / "notes.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    with pytest.raises(ConvertError, match="no DICOM images found in .*notes.zip"):
        convert.convert(bad, tmp_path / "x.nii.gz")


def test_nine_thousand_files_in_one_folder_need_no_file_list_on_a_command_line(tmp_path: Path) -> None:
    """heudiconv #774 ('Argument list too long' with 9,000+ files): files are found by walking the
    folder and handed to workers by index, never listed on a command line."""
    for n in range(30):
        make_series(tmp_path / "in", slices=301, rows=4, columns=4, series_number=n + 1, description=f"s{n}",
                    series_uid=f"1.2.826.0.1.3680043.10.777.{n + 1}", seed=n, shuffle_names=True)
    files = list((tmp_path / "in").iterdir())
    assert len(files) == 9030
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", jobs=2, reports=False)
    assert report.ok and len(report.outcomes) == 30
    assert sum(len(o.files) for o in report.outcomes) == 9030


def test_dry_run_after_a_run_shows_what_is_done_and_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from convert.cli import app

    make_archive(tmp_path / "in", n_series=3)
    run = ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--reorient", "RAS"]
    assert CliRunner().invoke(app, run).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    same = CliRunner().invoke(app, run + ["--dry-run"])
    assert "0 to convert, 3 done by an earlier run" in " ".join(same.output.split()), same.output
    other = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--dry-run"])
    assert "3 to convert, 0 done by an earlier run" in " ".join(other.output.split())  # other steps: redone
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


def test_the_api_dry_run_returns_the_plan_as_a_report_and_creates_nothing(tmp_path: Path) -> None:
    make_archive(tmp_path / "in", n_series=3)
    plan = convert.convert(tmp_path / "in", tmp_path / "out", dry_run=True, exclude=["modality=MR"])
    assert [o.status for o in plan.outcomes] == ["convert", "excluded", "convert"]
    assert [o.info["output"] for o in plan.outcomes] == ["1_CT_series_0", "", "3_CT_series_2"]
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_one_clear_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from convert.cli import app

    make_archive(tmp_path / "in", n_series=2)
    (tmp_path / "afile").write_text("a file, not a folder")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "afile" / "out")])
    assert result.exit_code == 1
    assert "cannot create the output folder" in result.output and "unexpected" not in result.output


def test_a_pool_run_reports_every_series_input_files_and_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    """Pool workers send outcomes back without input paths (the parent has them); the report has them all,
    and the objects frozen while the pool ran (workers.shared_heap) are back with the garbage collector."""
    import gc

    make_archive(tmp_path / "in", n_series=3)
    frozen = gc.get_freeze_count()
    alone = convert_dicom_tree(tmp_path / "in", tmp_path / "one", jobs=1, reports=False)
    pooled = convert_dicom_tree(tmp_path / "in", tmp_path / "two", jobs=2, reports=False)
    assert gc.get_freeze_count() == frozen
    assert pooled.jobs == 2
    assert [o.files for o in pooled.outcomes] == [o.files for o in alone.outcomes]
    assert all(len(o.files) == 12 for o in pooled.outcomes)


def test_a_pool_worker_runs_its_job_from_the_bytes_pickled_before_the_fork(tmp_path: Path) -> None:
    """The workers never touch the parent's plan objects (run._pickled_jobs, run._run_indexed): the job is
    unpickled in the worker, converted, and its outcome comes back without the input paths."""
    import convert.batch.run as run

    make_archive(tmp_path / "in", n_series=2)
    plan = run.plan_dicom_tree(tmp_path / "in")
    ctx = run.JobContext(source=tmp_path / "in", out_dir=tmp_path / "out")
    (tmp_path / "out").mkdir()
    blobs, headers = run._pickled_jobs(plan.jobs)
    assert len(blobs) == 2 and all(isinstance(b, bytes) for b in blobs)
    run._init_pool_worker(blobs, headers, ctx, frozenset())
    try:
        outcome = run._run_indexed(1)
    finally:
        run._init_pool_worker([], [], ctx, frozenset())
    assert outcome.ok and outcome.files == [] and outcome.label == plan.jobs[1].label
    assert outcome.written and all(p.is_file() for p in outcome.written)
    assert run._with_inputs(outcome, plan.jobs[1]).files == plan.jobs[1].series.paths


def test_the_headers_the_scan_kept_travel_to_a_worker_by_reference_not_copied(tmp_path: Path) -> None:
    """An enhanced file keeps its header view: the pickled job refers to it by position (run._pickled_jobs)
    and the worker's job gets a view of its own over the same parsed bytes."""
    import convert.batch.run as run

    enhanced = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "dcm_qa_enh" / "In"
    if not enhanced.is_dir():
        pytest.skip("needs the shared conformance data (enhanced DICOM)")
    plan = run.plan_dicom_tree(enhanced)
    kept = [i.header for j in plan.jobs for i in j.series.instances if i.header is not None]
    blobs, headers = run._pickled_jobs(plan.jobs)
    assert kept and len(headers) == len(kept) and all(a is b for a, b in zip(headers, kept))
    assert sum(map(len, blobs)) < 20_000  # the headers themselves are not in the pickles
    job = run._unpickled_job(blobs[0], headers)
    assert job.series.paths == plan.jobs[0].series.paths and job is not plan.jobs[0]
    for mine, theirs in zip(job.series.instances, plan.jobs[0].series.instances):
        assert mine.header is not theirs.header and mine.header.part10 is theirs.header.part10
