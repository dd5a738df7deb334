"""Kill-safety and resume (issue 17): ``medconvert anonymize`` and ``medconvert convert`` SIGKILLed at
random moments, then rerun.

Real subprocesses are killed with SIGKILL at a point drawn from a seeded random generator: once
k outputs are in place (k = 0: as soon as the output folder exists), or while a temporary file is
being written. Then: no process the killed run
started outlives it (checked by pid), every file under a final name is byte for byte the one an
uninterrupted run writes, the rerun of the same command completes, says what was already done and
which stale temporary files it removed, and leaves exactly the uninterrupted run's files.

The commands run through typer's app (``convert.cli.app``, what ``medconvert`` and ``python -m
convert`` run). ``MEDCONVERT_KILL_TRIALS`` sets the number of trials per command
(default 4; the issue's kill table used 10); with ``MEDCONVERT_KILL_LOG=FILE`` each trial appends
one JSON line (what was in place at the kill, what the rerun did) to FILE, for that table::

    MEDCONVERT_KILL_TRIALS=10 MEDCONVERT_KILL_LOG=/tmp/kills.jsonl python -m pytest tests/test_resume.py -k killed
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import convert
from convert.anonymize.run import MANIFEST_NAME
from convert.atomic import TEMPORARY_NAME, process_alive, temporary_name
from convert.cli import app
from convert.errors import OutputMismatchError
from convert.report import REPORT_HTML, REPORT_JSON
from fixtures.dicom_series import small_spec, write_series

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to follow pids")

KEY = b"resume-test-key"
TRIALS = int(os.environ.get("MEDCONVERT_KILL_TRIALS", "4"))
CLI = [sys.executable, "-c", "import sys; from convert.cli import app; app()"]


# --------------------------------------------------------------------------- helpers
def _tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (the manifest included), temporaries excluded."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not TEMPORARY_NAME.match(p.name)}


def _anonymized(root: Path) -> dict[str, bytes]:
    """:func:`_tree_files` of a de-identification without its run report (``report.*``: timings)."""
    return {k: v for k, v in _tree_files(root).items() if k not in (REPORT_JSON, REPORT_HTML)}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMPORARY_NAME.match(p.name)] if root.exists() else []


def _descendants(pid: int) -> set[int]:
    """Pids of every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _kill_point(rng: random.Random, suffix: str, total: int) -> tuple[str, int]:
    """A seeded kill point: ("outputs", k) once k final outputs exist (k = 0: once the output folder
    does), or ("temporary", 0) while a temporary file is being written."""
    if rng.random() < 0.3:
        return "temporary", 0
    return "outputs", rng.randint(0, total - 1)


def _reached(dst: Path, suffix: str, point: tuple[str, int]) -> bool:
    if not dst.exists():
        return False
    kind, k = point
    outputs = temporaries = 0
    for _dir, _dirs, names in os.walk(dst):
        for name in names:
            if TEMPORARY_NAME.match(name):
                temporaries += 1
            elif name.endswith(suffix):
                outputs += 1
    return temporaries > 0 if kind == "temporary" else outputs >= k


def _run_and_kill(cmd: list[str], dst: Path, suffix: str, point: tuple[str, int]) -> tuple[bool, set[int]]:
    """Start ``cmd`` and SIGKILL it at ``point`` (see :func:`_kill_point`); (killed before it
    finished, pids of the processes it had started)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "400"})
    children: set[int] = set()
    deadline = time.monotonic() + 120
    polls = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if polls % 10 == 0:  # /proc is slower to read than the output folder
                children |= _descendants(proc.pid)
            polls += 1
            if _reached(dst, suffix, point):
                break
            time.sleep(0.001)
        children |= _descendants(proc.pid)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return killed, children


def _differences(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    """Names missing, extra or differing between two :func:`_tree_files` results."""
    return sorted(n for n in set(got) | set(want) if got.get(n) != want.get(n))


def _log_trial(**fields: object) -> None:
    log = os.environ.get("MEDCONVERT_KILL_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(fields) + "\n")


def _assert_all_gone(pids: set[int]) -> None:
    """Every pid in ``pids`` ends within 3 s (pool workers die with their parent)."""
    deadline = time.monotonic() + 3
    alive = {p for p in pids if process_alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {p for p in alive if process_alive(p)}
    assert not alive, f"processes of the killed run still running: {sorted(alive)}"


# --------------------------------------------------------------------------- anonymize
@pytest.fixture(scope="module")
def anonymize_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """150 DICOM files (three series: above the pool threshold) and an uninterrupted run's output."""
    root = tmp_path_factory.mktemp("anon")
    src = root / "src"
    for n in range(3):
        write_series(src / f"series{n}", small_spec(rows=128, columns=128, slices=50, series_number=n + 1,
                                                    seed=17 + n))
    (src / "notes.txt").write_text("exported by PACS")
    key = root / "key.bin"
    key.write_bytes(KEY)
    reference = convert.anonymize(src, root / "reference", key=key, workers=2)
    assert len(reference.written) == 150 and reference.ok
    return {"root": root, "src": src, "key": key, "total": 150, "reference": _tree_files(root / "reference")}


@pytest.mark.parametrize("seed", range(TRIALS))
def test_anonymize_killed_at_random_then_rerun_completes_identically(anonymize_case: dict, seed: int) -> None:
    rng = random.Random(1700 + seed)
    dst = anonymize_case["root"] / f"killed{seed}"
    cmd = CLI + ["anonymize", str(anonymize_case["src"]), str(dst), "--key", str(anonymize_case["key"]),
                 "--jobs", "2"]
    total = anonymize_case["total"]
    point = _kill_point(rng, ".dcm", total)
    killed, children = _run_and_kill(cmd, dst, ".dcm", point)
    reference = anonymize_case["reference"]
    workers_left = len({p for p in children if process_alive(p)})
    if killed:
        _assert_all_gone(children)
    # no partial file under a final name: each is the uninterrupted run's file, byte for byte
    in_place = {name: data for name, data in _anonymized(dst).items() if name != MANIFEST_NAME}
    assert all(reference.get(name) == data for name, data in in_place.items())
    stale = [p for p in _temporaries(dst) if not process_alive(int(TEMPORARY_NAME.match(p.name)["pid"]))]
    assert len(stale) == len(_temporaries(dst))  # every temporary left belongs to a dead process
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = rerun.stdout.strip().splitlines()[-1]
    done = len(in_place)
    if done:
        assert f"{total - done} file(s) de-identified, {done} already done by an earlier run" in summary
    else:
        assert summary.startswith(f"{total} file(s) de-identified")
    if stale:
        assert f"{len(stale)} stale temporary file(s) of an interrupted run removed" in summary
    identical = _anonymized(dst) == reference
    # the run report beside the outputs: the rerun's own counts, never counted as an output (the manifest,
    # compared above, counts the uninterrupted run's outputs)
    totals = json.loads((dst / REPORT_JSON).read_text())["totals"]
    assert (totals["written"], totals["done"], totals["failed"], totals["outputs"]) == (total - done, done, 0, total)
    _log_trial(command="anonymize", seed=seed, kill_at=point, killed=killed, processes=len(children),
               alive_at_kill_check=workers_left, final_files=done, temporaries=len(stale), rerun_code=rerun.returncode,
               rerun_summary=summary, identical=identical, temporaries_after=len(_temporaries(dst)))
    assert identical, _differences(_anonymized(dst), reference)  # outputs and manifest: an uninterrupted run's
    assert not _temporaries(dst)


def test_anonymize_workers_die_with_their_parent(anonymize_case: dict) -> None:
    """Killed while its pool works: every worker pid is gone (not left writing)."""
    dst = anonymize_case["root"] / "workers"
    cmd = CLI + ["anonymize", str(anonymize_case["src"]), str(dst), "--key", str(anonymize_case["key"]),
                 "--jobs", "2"]
    killed, children = _run_and_kill(cmd, dst, ".dcm", ("outputs", 10))
    if not killed:
        pytest.skip("the run finished before it could be killed (machine too fast for this check)")
    assert len(children) >= 2  # the pool's two workers were seen
    _assert_all_gone(children)
    settled = _tree_files(dst)
    time.sleep(0.3)
    assert _tree_files(dst) == settled  # nothing is written any more


# --------------------------------------------------------------------------- convert
@pytest.fixture(scope="module")
def convert_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six series converted to NIfTI (gzip) + JSON sidecars, uninterrupted."""
    root = tmp_path_factory.mktemp("conv")
    src = root / "src"
    for n in range(6):
        write_series(src / f"s{n}", small_spec(rows=256, columns=256, slices=32, series_number=n + 1,
                                               description=f"series {n}", seed=40 + n))
    report = convert.convert(src, root / "reference")
    assert report.ok and len(report.written) == 12
    return {"root": root, "src": src, "reference": _outputs(root / "reference")}


@pytest.mark.parametrize("seed", range(TRIALS))
def test_convert_killed_at_random_then_rerun_completes_identically(convert_case: dict, seed: int) -> None:
    rng = random.Random(1800 + seed)
    dst = convert_case["root"] / f"killed{seed}"
    cmd = CLI + ["convert", str(convert_case["src"]), str(dst)]
    point = _kill_point(rng, ".nii.gz", 6)
    killed, children = _run_and_kill(cmd, dst, ".nii.gz", point)
    if killed:
        _assert_all_gone(children)
    reference = convert_case["reference"]
    in_place = _outputs(dst)
    assert all(reference.get(name) == data for name, data in in_place.items())  # complete or absent
    stale = _temporaries(dst)
    rerun = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "COLUMNS": "400"})
    identical = _outputs(dst) == reference
    _log_trial(command="convert", seed=seed, kill_at=point, killed=killed, processes=len(children),
               final_files=len(in_place), temporaries=len(stale), rerun_code=rerun.returncode,
               rerun_summary=" ".join(rerun.stderr.split())[:200], identical=identical,
               temporaries_after=len(_temporaries(dst)))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    if stale:
        assert f"removed {len(stale)} stale temporary file(s) that an interrupted run left in" in " ".join(
            rerun.stderr.split())
    assert identical, _differences(_outputs(dst), reference)
    assert not _temporaries(dst)


def _outputs(root: Path) -> dict[str, bytes]:
    """:func:`_tree_files` without the run's record and report (``.medconvert/``, ``report.*``: timings)."""
    return {k: v for k, v in _tree_files(root).items()
            if not k.startswith(".medconvert/") and k not in ("report.json", "report.html")}


def test_convert_removes_only_stale_temporaries_of_its_own_naming(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_series(src, small_spec())
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = temporary_name(out / "1_Synthetic_head_phantom.nii.gz")
    stale = stale.with_name(stale.name.replace(f".{os.getpid()}-", f".{dead.pid}-"))
    stale.write_bytes(b"half a file")
    live = temporary_name(out / "other.nii.gz")  # ours, still running: kept
    live.write_bytes(b"being written")
    mine = out / ".notes.partial.txt"  # not our naming: kept
    mine.write_text("the user's")
    result = CliRunner().invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    assert "removed 1 stale temporary file(s) that an interrupted run left in" in " ".join(result.output.split())
    assert not stale.exists() and live.exists() and mine.exists()
    # a single output file: the stale temporaries beside it (the folder is not walked further)
    (out / "sub").mkdir()
    beside = temporary_name(out / "one.nrrd")
    beside = beside.with_name(beside.name.replace(f".{os.getpid()}-", f".{dead.pid}-"))
    deeper = out / "sub" / beside.name
    beside.write_bytes(b"half")
    deeper.write_bytes(b"half")
    with pytest.warns(UserWarning, match="removed 1 stale temporary file"):
        convert.convert(out / "1_Synthetic_head_phantom.nii.gz", out / "one.nrrd")
    assert not beside.exists() and deeper.exists() and live.exists() and mine.exists()


# --------------------------------------------------------------------------- resume rules (in process)
def _small_tree(root: Path, n: int = 6) -> Path:
    write_series(root, small_spec(slices=n))
    return root


def test_rerun_after_an_interruption_writes_what_is_missing_and_replaces_its_own_audit(tmp_path: Path) -> None:
    src = _small_tree(tmp_path / "in")
    audit = tmp_path / "audit.json"
    first = convert.anonymize(src, tmp_path / "out", key=KEY, audit=audit)
    reference = _tree_files(tmp_path / "out")
    for path in first.written[:2]:  # as if the run had been killed before writing these
        path.unlink()
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["outputs"] == 6
    again = convert.anonymize(src, tmp_path / "out", key=KEY, audit=audit)  # the same command
    assert sorted(again.written) == sorted(first.written[:2]) and sorted(again.done) == sorted(first.written[2:])
    assert again.ok and "2 file(s) de-identified, 4 already done by an earlier run" in again.summary()
    after = _tree_files(tmp_path / "out")
    assert after.pop(MANIFEST_NAME) != reference.pop(MANIFEST_NAME)  # it records the new audit file
    assert after == reference
    doc = json.loads(audit.read_text())
    assert doc["summary"]["written"] == 2 and doc["summary"]["already_done"] == 4
    assert len(doc["mapping"]["SeriesInstanceUID"]) == 1  # the mapping of every file, done ones too
    # an audit file the job did not write is still refused
    audit.write_text("{}")
    with pytest.raises(convert.ConvertError, match="audit file already exists"):
        convert.anonymize(src, tmp_path / "out", key=KEY, audit=audit)


def test_rerun_with_another_key_or_options_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    src = _small_tree(tmp_path / "in")
    convert.anonymize(src, tmp_path / "out", key=KEY)
    before = _tree_files(tmp_path / "out")
    with pytest.raises(OutputMismatchError, match="another key"):
        convert.anonymize(src, tmp_path / "out", key=b"another key")
    with pytest.raises(OutputMismatchError, match=r"no --keep option \(this run: --keep uids\)"):
        convert.anonymize(src, tmp_path / "out", key=KEY, keep=["uids"])
    with pytest.raises(OutputMismatchError, match=r"burned-in objects refused \(this run: burned-in objects allowed"):
        convert.anonymize(src, tmp_path / "out", key=KEY, allow_burned_in=True)
    assert _tree_files(tmp_path / "out") == before
    keyfile = tmp_path / "key.bin"
    keyfile.write_bytes(KEY)
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out"), "--key", str(keyfile),
                                      "--keep", "uids"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and text.startswith("error:") and "would mix two de-identifications" in text
    assert "Traceback" not in result.output
    assert _tree_files(tmp_path / "out") == before


def test_random_key_rerun_is_refused_with_a_hint(tmp_path: Path) -> None:
    """Without a key each process draws its own: a second process cannot complete the first's folder."""
    src = _small_tree(tmp_path / "in")
    env = {k: v for k, v in os.environ.items() if k not in ("MEDCONVERT_KEY", "MEDCONVERT_KEY_FILE")}
    cmd = CLI + ["anonymize", str(src), str(tmp_path / "out")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "400"})
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "400"})
    text = " ".join(again.stderr.split())
    assert again.returncode == 1 and "earlier run with a random key (it had no --key" in text
    keyfile = tmp_path / "key.bin"
    keyfile.write_bytes(KEY)
    keyed = tmp_path / "keyed"
    assert convert.anonymize(src, keyed, key=keyfile).ok
    third = subprocess.run(CLI + ["anonymize", str(src), str(keyed)], capture_output=True, text=True, timeout=120,
                           env={**env, "COLUMNS": "400"})
    text = " ".join(third.stderr.split())
    assert third.returncode == 1 and "another key (this run has no --key, so it drew a random one" in text


def test_overwrite_with_other_options_warns_and_rewrites(tmp_path: Path) -> None:
    src = _small_tree(tmp_path / "in")
    convert.anonymize(src, tmp_path / "out", key=KEY)
    with pytest.warns(UserWarning, match="the other files of that run stay"):
        report = convert.anonymize(src, tmp_path / "out", key=KEY, keep=["uids"], overwrite=True)
    assert len(report.written) == 6 and not report.done
    # the folder now records the second job: its rerun resumes, the first job's is refused
    assert len(convert.anonymize(src, tmp_path / "out", key=KEY, keep=["uids"]).done) == 6
    with pytest.raises(OutputMismatchError):
        convert.anonymize(src, tmp_path / "out", key=KEY)
    # --overwrite with the same job rewrites everything (nothing counted as done)
    assert len(convert.anonymize(src, tmp_path / "out", key=KEY, keep=["uids"], overwrite=True).written) == 6


def test_a_killed_run_that_wrote_nothing_does_not_bind_the_folder(tmp_path: Path) -> None:
    src = _small_tree(tmp_path / "in")
    out = tmp_path / "out"
    convert.anonymize(src, out, key=KEY)
    for path in out.rglob("*.dcm"):
        path.unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = temporary_name(out / "x.dcm")
    leftover = leftover.with_name(leftover.name.replace(f".{os.getpid()}-", f".{dead.pid}-"))
    leftover.write_bytes(b"half")
    report = convert.anonymize(src, out, key=b"another key")  # only bookkeeping in the folder: allowed
    assert len(report.written) == 6 and report.stale_removed == [leftover] and not leftover.exists()


def test_manifest_holds_no_key_no_phi_no_input_path(tmp_path: Path) -> None:
    src = tmp_path / "Doe^John 1961"
    write_series(src, small_spec(slices=3, extra={"PatientName": "Doe^John", "PatientID": "PID-778812"}))
    out = tmp_path / "out"
    convert.anonymize(src, out, key=KEY)
    text = (out / MANIFEST_NAME).read_text()
    doc = json.loads(text)
    assert set(doc) == {"medconvert", "format", "fingerprint", "key_source", "complete", "outputs", "audit_check"}
    assert doc["key_source"] == "bytes" and doc["complete"] is True and doc["outputs"] == 3
    assert set(doc["fingerprint"]) == {"tool", "method", "options", "allow_burned_in", "key_check"}
    for secret in (KEY.decode(), KEY.hex(), "Doe", "John", "PID-778812", str(src), "1961"):
        assert secret not in text
    assert not re.search(r"1\.2\.826|2\.25\.", text)  # no UID either


def test_all_files_failing_or_skipped_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    src = _small_tree(tmp_path / "in", n=2)
    for path in sorted(src.iterdir()):
        path.write_bytes(path.read_bytes()[:600])  # every DICOM file truncated
    (src / "notes.txt").write_text("not DICOM")
    keyfile = tmp_path / "key.bin"
    keyfile.write_bytes(KEY)
    for cmd in (CLI, [sys.executable, "-m", "convert"]):
        out = tmp_path / f"out{len(cmd)}"
        proc = subprocess.run(cmd + ["anonymize", str(src), str(out), "--key", str(keyfile)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
        err = " ".join(proc.stderr.split())
        assert proc.returncode == 1 and not proc.stdout
        assert err.endswith(f"error: nothing de-identified (2 failed, 1 non-DICOM skipped): nothing was written "
                            f"to {out}")
        assert err.count("failed:") == 2  # one line per file first
        assert not out.exists()  # nothing left behind, not even the manifest
    report = convert.anonymize(src, tmp_path / "api", key=KEY)
    assert not report.ok and report.nothing_written and not (tmp_path / "api").exists()


def test_a_rerun_in_the_same_process_after_the_output_was_removed_writes_everything(tmp_path: Path) -> None:
    """Output folders made by one run are not assumed by the next (the user may have removed them)."""
    import shutil

    src = _small_tree(tmp_path / "in")
    first = convert.anonymize(src, tmp_path / "out", key=KEY)
    reference = _tree_files(tmp_path / "out")
    shutil.rmtree(tmp_path / "out")
    again = convert.anonymize(src, tmp_path / "out", key=KEY)
    assert again.ok and sorted(again.written) == sorted(first.written)
    assert _tree_files(tmp_path / "out") == reference
