"""The large local fuzz run (not part of the test suite): every case of fixtures/fuzz_corpus.py.

    python tools/fuzz_run.py [--workers 2] [--every-element] [--flips 6] [--limit N] [--json out.jsonl]

Each worker process regenerates the (deterministic) corpus, takes every N-th case and runs
every command on it in-process (typer's CliRunner), with its address space limited
(``--memory-gib``, default 3) so that a header making medconvert allocate more than the
file could hold shows up as an error. The parent restarts a worker that dies (an abort:
the case it was running is recorded as ``abort``) or stops answering for ``--timeout``
seconds (``hang``). Prints the count per outcome class and the problems found.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = Path(os.environ.get("MEDCONVERT_SHARED", REPO.parent / "shared")) / "conformance"


def worker(index: int, total: int, start: int, args: argparse.Namespace) -> None:
    import resource
    import shutil
    import warnings

    sys.path.insert(0, str(REPO))
    warnings.simplefilter("ignore")
    from fixtures.fuzz_corpus import cli_invoker, corpus, run_case

    limit = args.memory_gib << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    invoke = cli_invoker()
    tmp = Path(tempfile.mkdtemp(prefix=f"fuzz{index}-"))
    for n, case in enumerate(corpus(tmp / "corpus", CONFORMANCE, n_flips=args.flips,
                                    every_element=args.every_element)):
        if n % total != index or n < start or (args.limit and n >= args.limit):
            continue
        print(json.dumps({"start": n, "case": case.name}), flush=True)
        folder = tmp / "run"
        shutil.rmtree(folder, ignore_errors=True)
        runs = run_case(case, folder, invoke)
        print(json.dumps({"done": n, "runs": [{"case": r.case, "command": r.command, "outcome": r.outcome,
                                                "problem": r.problem, "seconds": round(r.seconds, 3)}
                                               for r in runs]}), flush=True)
    print(json.dumps({"finished": True}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--flips", type=int, default=6)
    parser.add_argument("--every-element", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory-gib", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write every run as a JSON line here")
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args)
        return 0
    passthrough = [f"--flips={args.flips}", f"--limit={args.limit}", f"--memory-gib={args.memory_gib}"]
    passthrough += ["--every-element"] if args.every_element else []

    logs = Path(tempfile.mkdtemp(prefix="fuzzlog-"))

    def spawn(index: int, start: int) -> subprocess.Popen:
        # stderr to a file: a pipe nobody reads fills up and blocks the worker
        err = open(logs / f"{index}-{start}.err", "w+")
        return subprocess.Popen([sys.executable, __file__, "--worker", str(index), str(args.workers), str(start),
                                 *passthrough], stdout=subprocess.PIPE, stderr=err, text=True)

    procs = {i: spawn(i, 0) for i in range(args.workers)}
    starts = {i: 0 for i in range(args.workers)}
    current: dict[int, tuple[int, str, float]] = {}
    runs: list[dict] = []
    cases = 0
    began = time.time()
    out = open(args.json, "w") if args.json else None
    while procs:
        streams = {p.stdout.fileno(): i for i, p in procs.items()}  # type: ignore[union-attr]
        ready, _, _ = select.select(list(streams), [], [], 1.0)
        for fd in ready:
            i = streams[fd]
            line = procs[i].stdout.readline()  # type: ignore[union-attr]
            if not line:  # the worker died
                code = procs[i].wait()
                if i in current:
                    n, name, _ = current.pop(i)
                    err = (logs / f"{i}-{starts[i]}.err").read_text(errors="replace")[-500:]
                    runs.append({"case": name, "command": "?", "outcome": "abort",
                                 "problem": f"abort: exit {code}: {err}", "seconds": 0})
                    procs[i], starts[i] = spawn(i, n + 1), n + 1
                else:
                    del procs[i]
                continue
            msg = json.loads(line)
            if "start" in msg:
                current[i] = (msg["start"], msg["case"], time.time())
            elif "done" in msg:
                current.pop(i, None)
                cases += 1
                runs.extend(msg["runs"])
                if out:
                    for r in msg["runs"]:
                        out.write(json.dumps(r) + "\n")
            elif "finished" in msg:
                procs[i].wait()
                del procs[i]
        for i, (n, name, since) in list(current.items()):
            if time.time() - since > args.timeout:
                procs[i].kill()
                procs[i].wait()
                current.pop(i)
                runs.append({"case": name, "command": "?", "outcome": "hang",
                             "problem": f"hang: no answer in {args.timeout:.0f} s", "seconds": args.timeout})
                procs[i], starts[i] = spawn(i, n + 1), n + 1
    if out:
        out.close()
    counts = collections.Counter(r["outcome"] for r in runs)
    print(f"{cases} inputs, {len(runs)} runs in {time.time() - began:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    slow = sorted(runs, key=lambda r: -r["seconds"])[:5]
    print("slowest:", ", ".join(f"{r['case']} {r['command']} {r['seconds']:.1f}s" for r in slow))
    for r in runs:
        if r["problem"]:
            print(f"{r['outcome']:10s} {r['case']} [{r['command']}]: {r['problem'][:400]}")
    return 1 if any(r["problem"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
