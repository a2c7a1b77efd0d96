//! A second, schema-aware reader of the Perfetto files `cargo xtask trace` writes: Perfetto's
//! own Python package (`perfetto` on PyPI, which carries the compiled `Trace` proto schema,
//! `perfetto_trace_pb2`) and Google's `protobuf` parse the file, and a short script walks
//! every message for fields the schema does not know (a wrong field number or wire type
//! lands there), events on undescribed tracks, packets without a sequence id, time going
//! backwards and unbalanced slices. ui.perfetto.dev cannot be opened here; this is the
//! nearest check that the file means to Perfetto what we mean it to.
//!
//! The packages are installed, pinned, into a virtual environment under `target/` on first
//! use (`python3 -m venv`; on Debian/Ubuntu as root `python3-venv` is installed when the
//! module is missing); a machine without Python or PyPI gets an error saying which.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::setup;
use crate::{Context, Result, Workspace, fail};

/// The pinned packages.
const PACKAGES: &[&str] = &["perfetto==0.59.1", "protobuf==7.36.2"];

/// The checker, run as `python check.py TRACE THREAD...`; prints `OK ...` or the problems.
const SCRIPT: &str = r#"
import sys
from google.protobuf import unknown_fields
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace

data = open(sys.argv[1], 'rb').read()
want_threads = sys.argv[2:]
t = Trace()
t.ParseFromString(data)
problems = []

def walk(m, path):
    uf = unknown_fields.UnknownFieldSet(m)
    if len(uf):
        problems.append(f"{path}: fields unknown to Perfetto's schema: "
                        f"{[(f.field_number, f.wire_type) for f in uf]}")
    for fd, v in m.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            if fd.is_repeated:
                for i, x in enumerate(v):
                    walk(x, f"{path}.{fd.name}[{i}]")
            else:
                walk(v, f"{path}.{fd.name}")

walk(t, "trace")
tracks = {}
last_ts = 0
open_slices = {}
events = 0
for i, p in enumerate(t.packet):
    if p.trusted_packet_sequence_id == 0:
        problems.append(f"packet {i}: no trusted_packet_sequence_id")
    if p.HasField('track_descriptor'):
        d = p.track_descriptor
        if d.uuid in tracks:
            problems.append(f"packet {i}: track {d.uuid} described twice")
        tracks[d.uuid] = d
    if p.HasField('track_event'):
        e = p.track_event
        events += 1
        if e.track_uuid not in tracks:
            problems.append(f"packet {i}: event on undescribed track {e.track_uuid}")
        if p.timestamp < last_ts:
            problems.append(f"packet {i}: time goes back ({p.timestamp} after {last_ts})")
        last_ts = p.timestamp
        if e.type == e.TYPE_SLICE_BEGIN:
            open_slices[e.track_uuid] = open_slices.get(e.track_uuid, 0) + 1
        elif e.type == e.TYPE_SLICE_END:
            if open_slices.get(e.track_uuid, 0) == 0:
                problems.append(f"packet {i}: slice end without a begin on {e.track_uuid}")
            else:
                open_slices[e.track_uuid] -= 1
for uuid, n in open_slices.items():
    if n:
        problems.append(f"track {uuid}: {n} slices never end")
names = [d.thread.thread_name for d in tracks.values() if d.HasField('thread')]
for w in want_threads:
    if w not in names:
        problems.append(f"no thread track named {w!r} (threads: {names})")
if problems:
    print("\n".join(problems[:20]))
    sys.exit(1)
print(f"OK {len(t.packet)} packets, {len(tracks)} tracks, {events} events, no field unknown to Perfetto's schema")
"#;

/// The virtual environment's Python, with the packages installed.
fn ensure_venv(ws: &Workspace) -> Result<PathBuf> {
    let dir = ws.root.join("target/perfetto-schema");
    let python = dir.join("venv/bin/python");
    let stamp = dir.join("installed");
    let want = PACKAGES.join(" ");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(python);
    }
    std::fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
    let venv = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(dir.join("venv"))
            .status()
            .is_ok_and(|s| s.success())
    };
    if !venv() {
        if setup::host_os().is_debian_like() && setup::running_as_root() {
            println!("setup: python3 -m venv failed: installing python3-venv");
            setup::apt(&["update"]);
            setup::apt(&["install", "-y", "--no-install-recommends", "python3-venv"]);
        }
        if !venv() {
            return fail(
                "the Perfetto schema check needs Python 3 with its venv module: \
                 apt-get install python3 python3-venv",
            );
        }
    }
    println!("setup: installing {want} for the Perfetto schema check (PyPI)");
    let ok = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PACKAGES)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return fail(format!(
            "cannot install {want} from PyPI into {} (the Perfetto schema check needs them)",
            dir.display()
        ));
    }
    std::fs::write(&stamp, &want).context(|| format!("cannot write {}", stamp.display()))?;
    Ok(python)
}

/// Checks the Perfetto file `trace` against Perfetto's schema, wanting a thread track for each
/// of `threads`: the checker's summary, or what is wrong.
pub(crate) fn check(ws: &Workspace, trace: &Path, threads: &[&str]) -> Result<String> {
    let python = ensure_venv(ws)?;
    let script = ws.root.join("target/perfetto-schema/check.py");
    std::fs::write(&script, SCRIPT).context(|| format!("cannot write {}", script.display()))?;
    let out = Command::new(&python)
        .arg(&script)
        .arg(trace)
        .args(threads)
        .output()
        .context(|| format!("cannot run {}", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && text.starts_with("OK ") {
        Ok(text)
    } else {
        fail(format!(
            "Perfetto's schema refuses {}: {text}{}",
            trace.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
