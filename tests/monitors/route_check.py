#!/usr/bin/env python3
"""Check, fully offline, that TensorBoard event files reach Weights & Biases and SwanLab
through the tools' own TensorBoard import routes, and read back what each tool ingested.

    python route_check.py TB_LOGDIR SCRATCH [--timeout SECONDS] [--only wandb|swanlab]
                          [--netns auto|on|off]

Run it with the interpreter of a venv made from route-requirements.txt (beside this file).
It prints ONE JSON object on stdout:

    {"wandb":   {"ok": bool, "scalars": {tag: [[step, value], ...]}, "how": str, ...},
     "swanlab": {"ok": bool, "scalars": {...}, "texts": {tag: [[step, text], ...]}, "how": str, ...},
     "netns": bool}

`scalars` are read back from each tool's own output files with the tool's own reader, so a
caller can compare them with what the event files hold. Extra keys: `version`, `error`,
`seconds`, `run_dir`. Exit status: 0 when every route checked is ok, 1 otherwise (the JSON
is printed either way), 2 for bad arguments.

No network, no account, no API key. Each route runs in a child process (this same file) with
a timeout, its chatter sent to SCRATCH/<route>-*/child.log, HOME and the tools' config/cache
folders pointed into SCRATCH, telemetry and prompts off. With --netns auto (the default) the
child runs in a fresh network namespace (`unshare -rn`) when the kernel allows one, which
proves that nothing was fetched; `netns` in the output says whether that happened.

What each route is (wandb 0.31, swanlab 0.10; see the `how` strings):

* wandb: `wandb sync --sync-tensorboard DIR` was removed in wandb 0.30 ("The following options
  have been removed: --sync-tensorboard. Downgrade to wandb<=0.29.0 to use them."), and up to
  0.29 it needed a logged-in server connection. What remains is `sync_tensorboard`, served by
  wandb-core's TensorBoard reader: an offline run (`wandb.init(mode="offline")`) with
  `wandb.tensorboard.patch(root_logdir=...)`, and a TensorBoard EventFileWriter opened on the
  log folder, which announces the folder to wandb-core; wandb-core then reads every event file
  there and writes the scalars as history rows into the run's `.wandb` transaction log (the
  file `wandb sync <offline-run-dir>` later uploads). wandb-core only reads event files whose
  name says they were created on this host at or after the run's start
  (`tfevents.<time>.<hostname>`), so the files are copied, byte for byte, under such names
  first. The history is read back with `wandb leet inspect --json` (wandb's own reader of
  the transaction log); the TensorBoard step is the history key `global_step`. wandb-core
  imports no text summaries.
* swanlab: `swanlab convert -t tensorboard --tb-log-dir DIR --mode offline` calls
  `swanlab.login(relogin=True)` before anything else, whatever the mode, so it cannot run
  without an account and network (and exits 0 after logging the error). The check runs the
  same converter class the command runs, `swanlab.converter.TFBConverter(mode="offline")`,
  with `swanlab.login` made a no-op; it writes one offline run per event file
  (`run-*.swanlab`, the file `swanlab sync <run-dir>` later uploads), read back with
  swanlab's own `DataStoreReader` and `Record` proto.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROUTES = ("wandb", "swanlab")
TB_MARK = "tfevents"


# --------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------


def event_dirs(logdir: str) -> dict[str, list[str]]:
    """Relative folder -> sorted event-file names, for every folder under logdir holding one."""
    found: dict[str, list[str]] = {}
    for root, _dirs, files in os.walk(logdir):
        names = sorted(f for f in files if TB_MARK in f)
        if names:
            found[os.path.relpath(root, logdir)] = names
    return found


def child_env(home: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "SWANLAB_", "XDG_")) and k not in ("HOME", "PYTHONPATH")
    }
    env.update(
        HOME=home,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        XDG_DATA_HOME=os.path.join(home, ".local", "share"),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        NO_COLOR="1",
        # wandb: offline, quiet, no error reporting, no prompts, everything under HOME.
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_QUIET="true",
        WANDB_CONSOLE="off",
        WANDB_ERROR_REPORTING="false",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_SAVE_CODE="false",
        WANDB_DISABLE_JOB_CREATION="true",
        WANDB_X_DISABLE_STATS="true",
        WANDB_X_DISABLE_META="true",
        WANDB_CONFIG_DIR=os.path.join(home, ".config", "wandb"),
        WANDB_CACHE_DIR=os.path.join(home, ".cache", "wandb"),
        WANDB_DATA_DIR=os.path.join(home, ".local", "share", "wandb"),
        WANDB_ARTIFACT_DIR=os.path.join(home, "wandb-artifacts"),
        # swanlab: offline, no prompts, its root folder under HOME.
        SWANLAB_MODE="offline",
        SWANLAB_INTERACTIVE="false",
        SWANLAB_ROOT=os.path.join(home, ".swanlab"),
    )
    return env


def netns_prefix(mode: str) -> list[str]:
    if mode == "off":
        return []
    unshare = shutil.which("unshare")
    if unshare:
        try:
            r = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=20)
            if r.returncode == 0:
                return [unshare, "-rn"]
        except (OSError, subprocess.SubprocessError):
            pass
    if mode == "on":
        raise SystemExit("route_check: --netns on, but `unshare -rn` does not work here")
    return []


def tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_route(route: str, logdir: str, scratch: str, timeout: float, prefix: list[str]) -> dict:
    work = tempfile.mkdtemp(prefix=f"{route}-", dir=scratch)
    home = os.path.join(work, "home")
    os.makedirs(home)
    result_path = os.path.join(work, "result.json")
    log_path = os.path.join(work, "child.log")
    cmd = prefix + [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        route,
        logdir,
        work,
        result_path,
        str(timeout),
    ]
    t0 = time.monotonic()
    out: dict = {"ok": False, "scalars": {}, "how": "", "work_dir": work}
    with open(log_path, "wb") as log:
        # Own session, so that a timeout ends the child and whatever it started (wandb-core,
        # wandb-symon, swanlab's workers) together.
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            # The child is not reaped yet, so its process group is still this one.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()
    out["seconds"] = round(time.monotonic() - t0, 2)
    try:
        with open(result_path) as f:
            out.update(json.load(f))
    except (OSError, ValueError):
        pass
    if rc is None:
        out["ok"] = False
        out["error"] = f"timed out after {timeout:g}s; log tail: {tail(log_path)}"
    elif rc != 0 and not out.get("error"):
        out["ok"] = False
        out["error"] = f"child exited {rc}; log tail: {tail(log_path)}"
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logdir", help="TensorBoard log folder (holds events.out.tfevents.* files)")
    ap.add_argument("scratch", help="folder for the tools' output (created if missing)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per route (default 300)")
    ap.add_argument("--only", choices=ROUTES, action="append", help="check only this route")
    ap.add_argument("--netns", choices=("auto", "on", "off"), default="auto")
    args = ap.parse_args(argv)

    logdir = os.path.abspath(args.logdir)
    if not event_dirs(logdir):
        print(f"route_check: no {TB_MARK} file under {logdir}", file=sys.stderr)
        return 2
    scratch = os.path.abspath(args.scratch)
    os.makedirs(scratch, exist_ok=True)
    prefix = netns_prefix(args.netns)

    report: dict = {}
    for route in args.only or ROUTES:
        report[route] = run_route(route, logdir, scratch, args.timeout, prefix)
    report["netns"] = bool(prefix)
    json.dump(report, sys.stdout, sort_keys=True, allow_nan=False)
    sys.stdout.write("\n")
    return 0 if all(report[r]["ok"] for r in ROUTES if r in report) else 1


# --------------------------------------------------------------------------------------
# children: run one route, write {"ok", "scalars", "how", ...} to the result file
# --------------------------------------------------------------------------------------


def add(series: dict, tag: str, step, value) -> None:
    # Strict JSON: a non-finite float is written as the string "nan", "inf" or "-inf".
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    series.setdefault(tag, []).append([int(step), value])


def sort_series(series: dict) -> dict:
    # Stable: keeps the tool's own order for equal steps.
    return {tag: sorted(points, key=lambda p: p[0]) for tag, points in sorted(series.items())}


def wandb_history_from_leet(wandb_file: str, work: str, timeout: float) -> list[dict]:
    """History rows of a .wandb file, through `wandb leet inspect --json` (wandb-core's reader)."""
    exe = os.path.join(os.path.dirname(sys.executable), "wandb")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "wandb"]
    proc = subprocess.run(
        cmd + ["leet", "inspect", "--json", wandb_file],
        cwd=work,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wandb leet inspect exited {proc.returncode}: {proc.stderr[-2000:]}")
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec.get("type") == "history":
            rows.append(rec["history"]["item"])
    return rows


def wandb_history_from_proto(wandb_file: str) -> list[dict]:
    """Fallback: history rows of a .wandb file decoded with wandb's own Record proto.

    The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
    blocks of chunks, each with a 7-byte header (checksum u32, length u16, type u8; types
    1 full, 2 first, 3 middle, 4 last)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    block, hlen = 32768, 7
    with open(wandb_file, "rb") as f:
        data = f.read()
    if data[:4] != b":W&B":
        raise RuntimeError(f"{wandb_file}: not a W&B transaction log")
    pos, pending, rows = 7, b"", []
    while pos + hlen <= len(data):
        left = block - pos % block
        if left < hlen:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + hlen])
        chunk = data[pos + hlen : pos + hlen + length]
        pos += hlen + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind not in (1, 4):
            continue
        rec = pb.Record()
        rec.ParseFromString(pending)
        pending = b""
        if rec.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in rec.history.item:
            key = item.key or "/".join(item.nested_key)
            which = item.WhichOneof("value") if item.DESCRIPTOR.oneofs else None
            if which in ("number", "integer", "boolean", "text"):
                row[key] = getattr(item, which)
            elif which == "json":
                row[key] = json.loads(item.json)
            elif item.value_json:
                row[key] = json.loads(item.value_json)
        rows.append(row)
    return rows


def child_wandb(logdir: str, work: str, timeout: float) -> dict:
    import wandb

    # The patched class is looked up on the module after `patch`, not imported before it.
    import tensorboard.summary.writer.event_file_writer as efw

    copy_root = os.path.join(work, "tb")
    dirs = event_dirs(logdir)
    wandb.tensorboard.patch(root_logdir=copy_root, save=False)
    wanted = dict(
        mode="offline",
        silent=True,
        console="off",
        disable_git=True,
        disable_code=True,
        save_code=False,
        disable_job_creation=True,
        x_disable_stats=True,
        x_disable_meta=True,
        x_disable_machine_info=True,
        x_save_requirements=False,
    )
    fields = getattr(wandb.Settings, "model_fields", None) or {}
    settings = wandb.Settings(**{k: v for k, v in wanted.items() if not fields or k in fields})
    run = wandb.init(dir=work, project="lmf-route-check", settings=settings)
    # wandb-core reads only files named tfevents.<time>.<hostname> with <time> >= the run's
    # start (so that old runs' files in a shared folder are skipped): copy under such names,
    # keeping the original order within each folder.
    t_name = int(time.time()) + 1
    host = socket.gethostname()
    copied = []
    for rel, names in sorted(dirs.items()):
        dst_dir = os.path.normpath(os.path.join(copy_root, rel))
        os.makedirs(dst_dir, exist_ok=True)
        for i, name in enumerate(names):
            dst = os.path.join(dst_dir, f"events.out.tfevents.{t_name + i}.{host}.lmf-route.{i}")
            shutil.copyfile(os.path.join(logdir, rel, name), dst)
            copied.append(dst)
    # Announce each folder the way any TensorBoard writer does under sync_tensorboard; the
    # writer only adds a file with the version header and no summaries.
    for rel in sorted(dirs):
        efw.EventFileWriter(os.path.normpath(os.path.join(copy_root, rel))).close()
    run_dir = os.path.dirname(run.settings.sync_file) if getattr(run.settings, "sync_file", None) else None
    run.finish()

    files = sorted(glob.glob(os.path.join(work, "wandb", "offline-run-*", "run-*.wandb")))
    if not files:
        raise RuntimeError("wandb wrote no offline run (wandb/offline-run-*/run-*.wandb)")
    wandb_file = files[-1]
    try:
        rows = wandb_history_from_leet(wandb_file, work, timeout)
        reader = "`wandb leet inspect --json`"
    except (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError) as e:
        rows = wandb_history_from_proto(wandb_file)
        reader = f"wandb's Record proto (leet inspect failed: {str(e)[:300]})"

    scalars: dict = {}
    no_step = 0
    for row in rows:
        step = row.get("global_step")
        if step is None:
            no_step += 1
            step = row.get("_step", 0)
        for key, value in row.items():
            if key.startswith("_") or key == "global_step":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            add(scalars, key, step, float(value))
    how = (
        "offline wandb run: wandb.tensorboard.patch(root_logdir=copy, save=False) + "
        "wandb.init(mode='offline') + a TensorBoard EventFileWriter opened on the copy "
        "(sync_tensorboard route, read by wandb-core); event files copied byte for byte as "
        f"tfevents.<now>.{host}.*; history read back from {os.path.relpath(wandb_file, work)} "
        f"with {reader}; step = history key global_step; text summaries are not imported by wandb"
    )
    result = {
        "ok": bool(scalars),
        "scalars": sort_series(scalars),
        "how": how,
        "version": wandb.__version__,
        "run_dir": os.path.dirname(wandb_file) if run_dir is None else run_dir,
        "history_rows": len(rows),
        "copied_files": len(copied),
    }
    if no_step:
        result["rows_without_global_step"] = no_step
    if not scalars:
        result["error"] = "wandb ingested no scalar (no numeric history key in the offline run)"
    return result


def child_swanlab(logdir: str, work: str, timeout: float) -> dict:
    import swanlab
    from swanlab.converter import TFBConverter
    from swanlab.proto.swanlab.metric.column.v1.column_pb2 import ColumnType
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    # `swanlab convert -t tensorboard` (and TFBConverter.run) call swanlab.login(relogin=True)
    # unconditionally, which needs an API key and the SwanLab server even in offline mode.
    swanlab.login = lambda *a, **k: True
    log_dir = os.path.join(work, "swanlog")
    TFBConverter(project="lmf-route-check", mode="offline", log_dir=log_dir, types="scalar,text").run(
        convert_dir=logdir, depth=3
    )

    files = sorted(glob.glob(os.path.join(log_dir, "run-*", "run-*.swanlab")))
    if not files:
        raise RuntimeError("swanlab wrote no offline run (swanlog/run-*/run-*.swanlab)")
    scalars: dict = {}
    texts: dict = {}
    for path in files:
        run_dir = os.path.dirname(path)
        reader = DataStoreReader()
        reader.open(path)
        try:
            for raw in reader:
                rec = Record()
                rec.ParseFromString(raw)
                kind = rec.WhichOneof("record_type")
                if kind == "scalar":
                    add(scalars, rec.scalar.key, rec.scalar.step, float(rec.scalar.value.number))
                elif kind == "media" and rec.media.type == ColumnType.COLUMN_TYPE_TEXT:
                    for item in rec.media.value.items:
                        p = os.path.join(run_dir, "media", "text", item.filename)
                        try:
                            with open(p, encoding="utf-8") as f:
                                body = f.read()
                        except OSError:
                            body = None
                        add(texts, rec.media.key, rec.media.step, body)
        finally:
            reader.close()
    how = (
        "offline swanlab runs: swanlab.converter.TFBConverter(mode='offline', types='scalar,text')"
        ".run(convert_dir=logdir) - the class behind `swanlab convert -t tensorboard "
        "--tb-log-dir` - with swanlab.login made a no-op (the command logs in even offline); "
        f"{len(files)} run(s), one per event file, read back with swanlab's DataStoreReader + Record proto"
    )
    result = {
        "ok": bool(scalars),
        "scalars": sort_series(scalars),
        "texts": sort_series(texts),
        "how": how,
        "version": getattr(swanlab, "__version__", ""),
        "run_dir": os.path.dirname(files[-1]),
        "runs": len(files),
    }
    if not result["version"]:
        from importlib.metadata import version

        result["version"] = version("swanlab")
    if not scalars:
        result["error"] = "swanlab ingested no scalar"
    return result


def child(route: str, logdir: str, work: str, result_path: str, timeout: float) -> int:
    os.chdir(work)
    try:
        fn = {"wandb": child_wandb, "swanlab": child_swanlab}[route]
        result = fn(logdir, work, timeout)
        rc = 0
    except BaseException as e:  # noqa: BLE001 - report whatever stopped the route
        import traceback

        traceback.print_exc()
        result = {"ok": False, "scalars": {}, "how": "", "error": f"{type(e).__name__}: {e}"}
        rc = 1
    with open(result_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(result_path + ".tmp", result_path)
    return rc


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])))
    sys.exit(main(sys.argv[1:]))
