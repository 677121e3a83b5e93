"""`make bench`: measure, compare against the named peers in the same run, write benchmarks/RESULTS.md.

Figures are wall-clock on this machine; each is the best of ``REPEATS`` runs to damp noise.
``python -m benchmarks.run deid`` (or any of ``PARTS``) re-measures only those parts; RESULTS.md keeps the rest.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom

from benchmarks.timing import REPEATS, best_of, clustered_vectors
from hca_assets.sources.claims import claim
from hca_assets.stages.ingest import ingest_batch
from hca_assets.synthetic import GeneratorOptions, generate

RESULTS = Path(__file__).parent / "RESULTS.md"
KEY = b"benchmark-key-0123456789"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) // 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB, Python {platform.python_version()}, pydicom {pydicom.__version__}"


def public_files() -> list[Path]:
    import data_store

    roots = [Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.__file__).parent / "data"]
    return [p for r in roots for p in sorted(r.rglob("*.dcm")) if p.is_file()]


def bench_generator(work: Path) -> tuple[list[str], Path]:
    options = GeneratorOptions(patients=7, seed=0)  # also the corpus of the ingest and embedding benchmarks
    shutil.rmtree(work / "gen", ignore_errors=True)
    summary = generate(work / "gen" / "dicom", work / "gen" / "truth", options)
    rate = summary.instances / summary.seconds
    return [
        "## Synthetic generator",
        "",
        f"{summary.instances} instances ({options.patients} patients: CT {options.ct_slices}×{options.ct_size}², "
        f"CR/DX {options.cxr_size}², MR {options.mr_slices}×{options.mr_size}², US 640×480) in {summary.seconds:.2f} s: "
        f"**{rate:.0f} instances/s = {rate * 60:.0f}/min** (goal ≥ 1000/min: {rate * 60 / 1000:.1f}×).",
        "",
    ], work / "gen" / "dicom"


def bench_ingest(work: Path, synthetic: Path) -> list[str]:
    corpus = work / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.copytree(synthetic, corpus / "synthetic")
    for i, p in enumerate(public_files()):
        shutil.copy(p, corpus / f"public_{i:03d}_{p.name}")
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    size_mb = sum(p.stat().st_size for p in files) / 2**20

    def dcmread_loop() -> None:
        for p in files:
            try:
                pydicom.dcmread(p)
            except Exception:  # noqa: BLE001 - the peer loop just skips what it cannot read
                pass

    def dcmread_pixels_loop() -> None:
        for p in files:
            try:
                pydicom.dcmread(p).pixel_array  # noqa: B018 - decode is the point
            except Exception:  # noqa: BLE001
                pass

    def ingest(workers: int) -> Callable[[], None]:
        def run() -> None:
            root = Path(tempfile.mkdtemp(dir=work))
            shutil.copytree(corpus, root / "landing")
            batch = claim(root / "landing", root / "raw", settle_seconds=0)
            assert batch is not None
            ingest_batch(batch, key=KEY, quarantine_root=root / "q", known={}, workers=workers)
            shutil.rmtree(root)

        return run

    copy_only = best_of(lambda: shutil.rmtree(Path(shutil.copytree(corpus, Path(tempfile.mkdtemp(dir=work)) / "c")).parent))
    t_read = best_of(dcmread_loop)
    t_pix = best_of(dcmread_pixels_loop)
    t1 = best_of(ingest(1)) - copy_only
    t2 = best_of(ingest(2)) - copy_only
    n = len(files)
    rows = [
        ("plain `pydicom.dcmread` loop (peer)", t_read),
        ("`dcmread` + `pixel_array` loop", t_pix),
        ("hca ingest, 1 worker", t1),
        ("hca ingest, 2 workers", t2),
    ]
    lines = [
        "## Ingest (`raw_dicom` core: claim + parse + sha256 + decode every frame + dedupe + quarantine copies)",
        "",
        f"Corpus: {n} files, {size_mb:.0f} MiB — the generator's output above plus pydicom's and pydicom-data's "
        "test files (every transfer syntax; some deliberately broken). Ingest time excludes copying the corpus "
        f"into a fresh landing zone ({copy_only:.2f} s, measured separately and subtracted).",
        "",
        "| what | seconds | files/s | ratio to plain dcmread |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {t:.2f} | {n / t:.0f} | {t_read / t:.2f}× |" for name, t in rows]
    lines += [
        "",
        "Ingest does strictly more than the peer (it hashes, fully decodes every frame of every transfer syntax and "
        "copies rejects), so a ratio below 1× with one worker is expected; the `dcmread` + `pixel_array` row is the "
        f"like-for-like peer: 1 worker = {t_pix / t1:.2f}× it, 2 workers = {t_pix / t2:.2f}× it.",
        "",
    ]
    return lines


DEID_FILES = 600  # CT slices 512² in the whole-process de-identification benchmark (issue 8)
REAL_FILES = ("693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm")  # pydicom-data: CT, MR, CR, US
PYDICOM_LOOP = """import pathlib, sys
import pydicom
src, dst = map(pathlib.Path, sys.argv[1:])
for p in sorted(src.iterdir()):
    pydicom.dcmread(p).save_as(dst / p.name)
"""


@dataclass(frozen=True)
class ProcessRun:
    """One whole process: wall seconds from exec to exit and to its first output file, and CPU seconds
    (user + system) of the process and every process it started."""

    wall: float
    first_file: float
    cpu: float


def _children() -> set[int]:
    """Process ids whose parent is this process (zombies included)."""
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # the process ended while being read
            continue
    return found


def _has_output(folder: Path) -> bool:
    """Whether a finished file (not a dot-named temporary) is anywhere under ``folder``."""
    return any(not f.startswith(".") for _, _, files in os.walk(folder) for f in files)


def run_process(cmd: list[str], out: Path, env: dict[str, str], log: Path) -> ProcessRun:
    """Run ``cmd`` writing into the empty folder ``out``; poll for the first output file, then wait for the exit.

    This process is a child subreaper, so a fork server orphaned at the command's exit is reaped here and
    its CPU (and that of the workers it reaped) is counted."""
    known = _children()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=sink)
        first = None
        while first is None and proc.poll() is None:
            if _has_output(out):
                first = time.perf_counter() - start
            else:
                time.sleep(0.002)
        proc.wait()
    wall = time.perf_counter() - start
    deadline = time.monotonic() + 30
    while (left := _children() - known) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
    return ProcessRun(wall, wall if first is None else first,
                      after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)


def import_offenders(module: str, top: int = 5) -> tuple[float, list[tuple[str, str, float, float]]]:
    """``python -X importtime -c "import <module>"`` (least disturbed of ``REPEATS``): total ms of the hca_assets
    imports and the costliest imports made by hca_assets code as (module, imported by, self ms, cumulative ms),
    leaving out a module that merely passes on (≥ 80 % of its cost is one listed import of its own)."""
    runs = []
    for _ in range(REPEATS):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                             text=True, check=True).stderr
        rows = []  # (depth, name, self µs, cumulative µs), printed children first, then their parent
        for line in err.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                own, cumulative, name = line.removeprefix("import time:").split("|")
                rows.append(((len(name) - len(name.lstrip()) - 1) // 2, name.strip(), int(own), int(cumulative)))
        runs.append(rows)
    rows = min(runs, key=lambda r: sum(c for d, _, _, c in r if d == 0))
    stack: list[tuple[int, str]] = []
    found = []
    for depth, name, own, cumulative in reversed(rows):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack and stack[-1][1].startswith("hca_assets"):
            found.append((name, stack[-1][1], own / 1000, cumulative / 1000))
        stack.append((depth, name))
    offenders = [f for f in found if not any(g[1] == f[0] and g[3] >= 0.8 * f[3] for g in found)]
    total = sum(c for d, name, _, c in rows if d == 0 and name.startswith("hca_assets")) / 1000
    return total, sorted(offenders, key=lambda r: -r[3])[:top]


def screening_cost(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, int]]]]:
    """Per file: wall and CPU ms of ``display_frames(*viewer_pixels(ds))`` + ``TextScreen().bands`` on every
    frame (after reading; fastest of ``REPEATS`` passes; OpenCV on one thread), and the bands found."""
    import cv2

    from hca_assets.dicom.burned_in import TextScreen, display_frames, viewer_pixels

    screen, threads = TextScreen(), cv2.getNumThreads()
    cv2.setNumThreads(1)
    wall, cpu = np.full(len(paths), np.inf), np.full(len(paths), np.inf)
    bands: list[list[tuple[int, int]]] = []
    try:
        for _ in range(REPEATS):
            bands = []
            for i, p in enumerate(paths):
                ds = pydicom.dcmread(p)
                start, start_cpu = time.perf_counter(), time.thread_time()
                found = [band for frame in display_frames(*viewer_pixels(ds)) for band in screen.bands(frame)]
                wall[i] = min(wall[i], time.perf_counter() - start)
                cpu[i] = min(cpu[i], time.thread_time() - start_cpu)
                bands.append(found)
    finally:
        cv2.setNumThreads(threads)
    return wall * 1000, cpu * 1000, bands


def _real_rows(paths: list[Path]) -> list[str]:
    """Screening cost and the whole burned-in pass (screen → read flagged → redact → re-read) per real file."""
    from hca_assets.dicom.burned_in import RapidOcrReader, TextScreen, clean_burned_in_text

    wall, cpu, bands = screening_cost(paths)
    reader = RapidOcrReader()
    reader.read(np.zeros((32, 32), np.uint8))  # load the models outside the timing
    rows = []
    for p, w, c, found in zip(paths, wall, cpu, bands, strict=True):
        ds = pydicom.dcmread(p)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        times = []
        for _ in range(REPEATS):
            start, fresh = time.perf_counter(), pydicom.dcmread(p)
            result = clean_burned_in_text(fresh, TextScreen(), reader)
            times.append(time.perf_counter() - start)
        rows.append(f"| {p.name} | {ds.Modality} {ds.Rows}×{ds.Columns} {ds.PhotometricInterpretation} × {frames} | "
                    f"{c / frames:.1f} | {w / frames:.1f} | {len(found)} | {min(times) * 1000:.0f} | "
                    f"{result.status.value}, {result.reads} read(s), {result.blanked_fraction:.1%} blanked |")
    return rows


def _deid_inputs(work: Path) -> Path:
    """``DEID_FILES`` generated CT slices (512², 16-bit) copied into one flat folder."""
    options = GeneratorOptions(patients=13, seed=0)  # 13 × 48 = 624 CT slices
    generate(work / "deid_gen" / "dicom", work / "deid_gen" / "truth", options)
    ct = sorted((work / "deid_gen" / "dicom").glob("*/ct/*.dcm"))[:DEID_FILES]
    assert len(ct) == DEID_FILES, f"the generator gave {len(ct)} CT slices"
    folder = work / "deid_in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, p in enumerate(ct):
        shutil.copy(p, folder / f"{i:04d}.dcm")
    shutil.rmtree(work / "deid_gen")
    return folder


def bench_deid(work: Path) -> list[str]:
    """Whole processes on the same files, round-robin so the machine's load falls on each alike: `hca deid`
    (1 and 2 workers, screening on and off), dicognito's CLI, a bare pydicom read + write loop."""
    import ctypes

    load_before = os.getloadavg()
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
    inputs = _deid_inputs(work)
    data = work / "deid_data"
    data.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCA_")}
    env |= {"HCA_DATA_DIR": str(data), "HCA_DEID_KEY": KEY.decode()}
    hca, python = str(Path(sys.executable).with_name("hca")), sys.executable
    commands = {
        "hca1": ("`hca deid IN OUT --workers 1` (default: screening and the net on, `--ocr all`)",
                 [hca, "deid", str(inputs), "{out}", "--workers", "1"]),
        "nonet": ("`hca deid IN OUT --workers 1 --no-net` (screening only)",
                  [hca, "deid", str(inputs), "{out}", "--workers", "1", "--no-net"]),
        "hca2": ("`hca deid IN OUT --workers 2`", [hca, "deid", str(inputs), "{out}", "--workers", "2"]),
        "off": ("`hca deid IN OUT --workers 1 --ocr off` (no screening)",
                [hca, "deid", str(inputs), "{out}", "--workers", "1", "--ocr", "off"]),
        "dicognito": ("dicognito 0.19 CLI `python -m dicognito IN -o OUT` (peer; headers only)",
                      [python, "-m", "dicognito", str(inputs), "--output-directory", "{out}"]),
        "pydicom": ("bare pydicom `dcmread` + `save_as` loop, own process (peer)",
                    [python, "-c", PYDICOM_LOOP, str(inputs), "{out}"]),
    }
    runs: dict[str, list[ProcessRun]] = {name: [] for name in commands}
    for repeat in range(REPEATS):
        for name, (_, cmd) in commands.items():
            out = work / f"deid_out_{name}_{repeat}"
            out.mkdir()
            runs[name].append(run_process([c.replace("{out}", str(out)) for c in cmd], out, env, work / "deid.log"))
            written = sum(1 for _, _, files in os.walk(out) for f in files if not f.startswith("."))
            assert written == DEID_FILES, f"{name} wrote {written} of {DEID_FILES} files"
            shutil.rmtree(out)
    wall = {name: min(r.wall for r in rs) for name, rs in runs.items()}
    first = {name: min(r.first_file for r in rs) for name, rs in runs.items()}
    cpu = {name: min(r.cpu for r in rs) for name, rs in runs.items()}
    load_runs = os.getloadavg()

    total_cli, offenders = import_offenders("hca_assets.cli")
    preload = "hca_assets.stages.deid"  # what hca deid's fork server imports (started before the parent's own work)
    total_preload, preload_offenders = import_offenders(preload)
    ct_wall, ct_cpu, ct_bands = screening_cost(sorted(inputs.iterdir()))
    flagged = sum(bool(b) for b in ct_bands)
    import data_store

    real = _real_rows([Path(data_store.__file__).parent / "data" / name for name in REAL_FILES])
    shutil.rmtree(inputs)
    load_after = os.getloadavg()

    def ratio(a: str, b: str, of: dict[str, float]) -> str:
        return f"{of[b] / of[a]:.2f}×"

    lines = [
        "## De-identification (issues 8 and 19: whole process, same run, screening and net on)",
        "",
        f"{DEID_FILES} synthetic CT slices 512² 16-bit (~60 PHI attributes each incl. nested sequences and a "
        "private block) in one flat folder; every run writes into a new empty folder and must write all of them. "
        "Wall time is exec → exit of the whole process (best of 3); first file is exec → first finished file in the "
        "output folder; CPU is user + system of the process and of all it started (fork server and workers "
        "included). The commands run round-robin, so the machine's load falls on each alike. **Load average** "
        f"(1/5/15 min, {os.cpu_count()} cores shared with other work): {'/'.join(f'{x:.1f}' for x in load_before)} "
        f"before, {'/'.join(f'{x:.1f}' for x in load_runs)} after the runs: above {os.cpu_count()}, wall times are "
        "inflated and a second worker finds no free core; CPU seconds are not affected.",
        "",
        "| what | wall s (best of 3) | files/s | first file s | CPU s |",
        "|---|---:|---:|---:|---:|",
        *(f"| {label} | {wall[n]:.2f} | {DEID_FILES / wall[n]:.0f} | {first[n]:.2f} | {cpu[n]:.2f} |"
          for n, (label, _) in commands.items()),
        "",
        f"Ratios (speed, wall): hca 1 worker = **{ratio('hca1', 'dicognito', wall)}** dicognito (goal ≥ 1.0× with the net), "
        f"**{ratio('hca1', 'pydicom', wall)}** the pydicom loop (goal ≥ 0.6×); 2 workers = "
        f"**{ratio('hca2', 'hca1', wall)}** 1 worker (goal ≥ 1.7×). By CPU seconds: hca 1 worker = "
        f"{ratio('hca1', 'dicognito', cpu)} dicognito, {ratio('hca1', 'pydicom', cpu)} the pydicom loop; "
        f"screening and the net cost {cpu['hca1'] - cpu['off']:.2f} CPU s over {DEID_FILES} files "
        f"(wall: {wall['hca1'] - wall['off']:+.2f} s), the net alone **{(cpu['hca1'] - cpu['nonet']) / DEID_FILES * 1000:.1f} "
        f"ms per slice** (CPU; budget ≤ 25 ms), hca 1 worker without the net = {ratio('nonet', 'dicognito', wall)} "
        "dicognito. dicognito's own `dicognito` console script fails in 0.19.0 "
        "(`main()` is called without its argument), hence `python -m dicognito`.",
        "",
        f"**Start-up** (goal ≤ 0.5 s before the first file): {first['hca1']:.2f} s with 1 worker, {first['hca2']:.2f} s "
        f"with 2 (dicognito {first['dicognito']:.2f} s, pydicom loop {first['pydicom']:.2f} s). "
        f"`python -X importtime -c \"import hca_assets.cli\"`: {total_cli:.0f} ms; the fork server, started first "
        f"so that it overlaps the parent's key and spec loading, imports {preload}: {total_preload:.0f} ms. "
        "Costliest imports made by hca_assets code "
        "(least disturbed of 3 runs; a module that only passes on the cost of one import is left out):",
        "",
        "| start-up step | import | imported by | self ms | cumulative ms |",
        "|---|---|---|---:|---:|",
        *(f"| `import hca_assets.cli` | {m} | {by} | {own:.0f} | {ms:.0f} |" for m, by, own, ms in offenders),
        *(f"| fork-server preload | {m} | {by} | {own:.0f} | {ms:.0f} |" for m, by, own, ms in preload_offenders),
        "",
        f"**Screening cost** (`display_frames(*viewer_pixels(ds))` + `TextScreen().bands` per frame, after reading, "
        f"one core, fastest of 3 per file; budget ≤ 10 ms per 512² slice on average): on the {DEID_FILES} CT slices "
        f"CPU mean **{ct_cpu.mean():.1f} ms**, p95 {np.percentile(ct_cpu, 95):.1f} ms (wall mean {ct_wall.mean():.1f}, "
        f"p95 {np.percentile(ct_wall, 95):.1f} ms); flagged for reading: **{flagged} of {DEID_FILES}** "
        f"({flagged / DEID_FILES:.1%}). The generated slices are smooth, so the screen stops early; the real CT "
        "below (noise, table, ring) is the realistic figure.",
        "",
        "Real images (pydicom-data test files): screening per frame, then the whole burned-in pass as `hca deid` "
        "runs it (`clean_burned_in_text`: screen, read flagged frames with RapidOCR, black out, re-read; best of 3, "
        "models already loaded).",
        "",
        "| file | image | screen CPU ms/frame | screen wall ms/frame | bands flagged | whole pass ms | outcome |",
        "|---|---|---:|---:|---:|---:|---|",
        *real,
        "",
        f"Load average after everything: {'/'.join(f'{x:.1f}' for x in load_after)}.",
        "",
    ]
    return lines


def bench_ocr() -> list[str]:
    """Recall of the glyph-stroke screen and of the two offline OCR engines on the generator's burned-in text."""
    from hca_assets.dicom.burned_in import RapidOcrReader, TextScreen
    from hca_assets.synthetic.identities import make_identity
    from hca_assets.synthetic.phantoms import ultrasound_with_text

    def tesseract(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        import pytesseract

        d = pytesseract.image_to_data(image, config="--psm 11", output_type=pytesseract.Output.DICT)
        return [(x, y, x + w, y + h) for t, c, x, y, w, h in
                zip(d["text"], d["conf"], d["left"], d["top"], d["width"], d["height"], strict=True)
                if t.strip() and float(c) > 30]

    def screen(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(0, y0, image.shape[1], y1) for y0, y1 in TextScreen().bands(image)]

    def rapidocr(image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [line.box for line in RapidOcrReader().read(image)]

    engines = (("`TextScreen` glyph-stroke screen (bands, full width)", screen),
               ("RapidOCR 1.4 (PP-OCRv4, ONNX)", rapidocr), ("Tesseract 5 (`--psm 11`)", tesseract))
    rows = []
    for name, detect in engines:
        try:
            detect(np.zeros((32, 32), np.uint8))  # load models outside the timing
            coverage, start = [], time.perf_counter()
            for p in range(12):
                rng = np.random.default_rng([0, p])
                ident = make_identity(rng, p)
                lines = [ident.display_name.upper(), f"ID: {ident.mrn}", f"DOB: {ident.birth_date:%d/%m/%Y}",
                         f"2022-01-0{p % 9 + 1}  {ident.hospital}"]
                phantom = ultrasound_with_text(rng, lines=lines)
                mask = np.zeros(phantom.pixels.shape, dtype=bool)
                for x0, y0, x1, y1 in detect(phantom.pixels):
                    mask[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
                for _, (x0, y0, x1, y1) in phantom.text_boxes:
                    glyphs = phantom.pixels[y0:y1, x0:x1] > 128
                    coverage.append((mask[y0:y1, x0:x1] & glyphs).sum() / max(1, glyphs.sum()))
            seconds = (time.perf_counter() - start) / 12
            rows.append(f"| {name} | {np.mean(coverage):.3f} | {np.mean(np.array(coverage) > 0.99):.2f} | {seconds:.3f} |")
        except Exception as exc:  # noqa: BLE001 - an engine that is not installed is reported, not fatal
            rows.append(f"| {name} | not run: {type(exc).__name__} | | |")
    return [
        "## Burned-in text detection (choice of OCR engine)",
        "",
        "12 generated ultrasound images, 4 burned-in lines each (name, MRN, birth date, date + hospital), 18 px font.",
        "",
        "| engine | glyph pixels inside detected boxes | lines fully covered | s / image |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]


def bench_images(work: Path) -> list[str]:
    """Rendering against de-identification on the demo's batch (6 patients), in this process, round-robin so the
    machine's load falls on each alike; 2 workers (the default) and 1 for the scaling, and the CPU seconds of each
    stage run in this one process (no timeout), which the machine's load hardly changes."""
    from hca_assets.config import Limits, Settings
    from hca_assets.stages.deid import DeidSpec, load_staged, profile_from_settings, stage_batch
    from hca_assets.stages.images import RenderOutcome, render_batch

    settings = Settings()
    options = GeneratorOptions(patients=6, seed=0)  # `hca demo`'s batch
    load_before = os.getloadavg()
    shutil.rmtree(work / "images", ignore_errors=True)
    summary = generate(work / "images" / "dicom", work / "images" / "truth", options)
    sources = sorted((work / "images" / "dicom").rglob("*.dcm"))
    spec = DeidSpec(profile=profile_from_settings(settings), key=KEY, ocr_mode=settings.ocr_mode)
    staging = work / "images" / "staging"
    timeout = settings.limits.timeout  # as the assets run them: every file in a worker process

    def deid(workers: int, limits: Limits) -> Callable[[], None]:
        def run() -> None:
            out = stage_batch("b1", sources, staging, work / "images" / "quarantine", spec, workers=workers, limits=limits)
            assert not out.rejected, f"{len(out.rejected)} instances rejected"
        return run

    rows: list[dict[str, object]] = []
    outcome: list[RenderOutcome] = []

    def render(workers: int, timeout: float | None) -> Callable[[], None]:
        def run() -> None:
            shutil.rmtree(work / "images" / "png", ignore_errors=True)
            outcome[:] = [render_batch("b1", rows, staging, work / "images" / "png", workers=workers, timeout=timeout)]
            assert not outcome[0].failed, f"{len(outcome[0].failed)} instances failed"
        return run

    in_process = Limits(file_timeout_seconds=0)
    runs: dict[str, Callable[[], None]] = {
        "deid": deid(2, settings.limits), "images2": render(2, timeout), "images1": render(1, timeout),
        "deid_cpu": deid(1, in_process), "images_cpu": render(1, None),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(REPEATS):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            if name == "deid" and not repeat:
                keep = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_pseudonym", "modality")
                rows[:] = [{**{k: getattr(r, k) for k in keep}, "path": f"b1/{r.output}"} for r in load_staged(staging, "b1")]
    load_after = os.getloadavg()
    best = {name: min(t) for name, t in times.items()}
    rate = {name: summary.instances / t for name, t in best.items()}
    cpu_best = {name: min(cpu[name]) for name in ("deid_cpu", "images_cpu")}
    png = work / "images" / "png" / "b1"
    png_bytes = [p.stat().st_size for p in png.glob("*.png")]
    nifti_bytes = sum(p.stat().st_size for p in png.glob("*.nii.gz"))
    shutil.rmtree(work / "images")
    return [
        "## Images (issue 12 item 5: stage throughput)",
        "",
        f"`hca demo`'s batch: {summary.instances} instances ({options.patients} patients: CT {options.ct_slices}×"
        f"{options.ct_size}², MR {options.mr_slices}×{options.mr_size}², CR/DX {options.cxr_size}², US), de-identified "
        "(`stage_batch`, screening on) and rendered (`render_batch`: a 1024² PNG per frame, a NIfTI per CT/MR series) "
        f"in one process, per-file timeout on as in the assets, round-robin, best of {REPEATS}. **Load average** "
        f"(1/5/15 min, {os.cpu_count()} cores shared with other work): {'/'.join(f'{x:.1f}' for x in load_before)} "
        f"before, {'/'.join(f'{x:.1f}' for x in load_after)} after: above {os.cpu_count()}, wall times are inflated.",
        "",
        "| stage | wall s | instances/s |",
        "|---|---:|---:|",
        f"| de-identification, 2 workers | {best['deid']:.2f} | {rate['deid']:.0f} |",
        f"| images, 2 workers | {best['images2']:.2f} | **{rate['images2']:.0f}** |",
        f"| images, 1 worker | {best['images1']:.2f} | {rate['images1']:.0f} |",
        "",
        f"CPU seconds, each stage in this one process (1 worker, no timeout; the load hardly changes them): "
        f"de-identification {cpu_best['deid_cpu']:.2f} s = {1000 * cpu_best['deid_cpu'] / summary.instances:.1f} ms per "
        f"instance, images {cpu_best['images_cpu']:.2f} s = {1000 * cpu_best['images_cpu'] / summary.instances:.1f} ms "
        f"per instance: images cost **{cpu_best['images_cpu'] / cpu_best['deid_cpu']:.2f}×** de-identification's CPU, "
        f"and 2 free cores render up to {2 * summary.instances / cpu_best['images_cpu']:.0f} instances/s.",
        "",
        f"Images with 2 workers: **{rate['images2']:.0f} instances/s** (goal ≥ 100), **{best['images2'] / best['deid']:.2f}×** "
        f"de-identification's time (goal ≤ 2×); 2 workers = {best['images1'] / best['images2']:.2f}× 1 worker. "
        f"{len(outcome[0].images)} PNGs, mean {np.mean(png_bytes) / 1024:.0f} KiB; {len(outcome[0].volumes)} NIfTI "
        f"volumes, {nifti_bytes / 2**20:.0f} MiB in all. Before issue 12 the demo rendered 15 instances/s (29.1 s of a "
        "46.3 s run): every file was read twice (PNGs, then volumes in the parent), Pillow's PNG encoder (level 6, "
        "every filter tried on every row) took ~90 ms per frame, and volumes were written one by one.",
        "",
    ]


def bench_embeddings(synthetic: Path) -> list[str]:
    import numpy as np

    from hca_assets.dicom.pixels import display_frames, letterbox
    from hca_assets.models import LocalEmbedder

    images = [letterbox(next(display_frames(pydicom.dcmread(p))[1])) for p in sorted(synthetic.rglob("*.dcm"))[:120]]
    embedder = LocalEmbedder()
    t = best_of(lambda: embedder.embed(images))
    assert np.isfinite(embedder.embed(images[:2])).all()
    return ["## Embeddings", "", f"Local weight-free backend ({embedder.dim}-d) on {len(images)} letterboxed 1024² images: "
            f"**{len(images) / t:.0f} images/s** on one process.", ""]


def _latency(search: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    import numpy as np

    times = []
    for q in queries:
        start = time.perf_counter()
        search(q[np.newaxis])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _faiss_rows(v: np.ndarray, queries: np.ndarray) -> list[str]:
    import faiss
    import numpy as np

    from hca_assets.search.index import exact_index, ivf_index, recall_at_10

    n, dim = v.shape
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    exact = exact_index(v, ids)
    build = time.perf_counter() - start
    p50, p99 = _latency(lambda q: exact.search(q, 10), queries)
    rows = [f"| {n:,} | exact (IndexFlatIP) | {build:.1f} | {p50:.2f} | {p99:.2f} | 1.000 |"]
    p50, p99 = _latency(lambda q: np.argpartition(-(v @ q[0]), 10)[:10], queries)
    rows.append(f"| {n:,} | numpy matmul + argpartition (baseline) | – | {p50:.2f} | {p99:.2f} | 1.000 |")
    faiss.omp_set_num_threads(2)  # building may use both cores; queries are timed on one
    start = time.perf_counter()
    ivf, facts = ivf_index(v, ids)
    build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    p50, p99 = _latency(lambda q: ivf.search(q, 10), queries)
    rows.append(f"| {n:,} | IVF-Flat nlist {facts['nlist']} nprobe {facts['nprobe']} | {build:.1f} | {p50:.2f} | "
                f"{p99:.2f} | {recall_at_10(ivf, exact, queries):.3f} |")
    if n <= 100_000:
        faiss.omp_set_num_threads(2)
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(v)
        build = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        hnsw.hnsw.efSearch = 64
        p50, p99 = _latency(lambda q: hnsw.search(q, 10), queries)
        rows.append(f"| {n:,} | HNSW M32 efSearch 64 | {build:.1f} | {p50:.2f} | {p99:.2f} | "
                    f"{recall_at_10(hnsw, exact, queries):.3f} |")
    return rows


def bench_faiss(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000), dim: int = 1024) -> list[str]:
    """Exact vs IVF (vs HNSW up to 100k) vs a numpy matmul, single queries on one thread."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    lines = ["## FAISS (random-but-clustered 1024-d vectors, 1000 clusters; single query, 1 thread)", "",
             "| vectors | index | build s | p50 ms | p99 ms | recall@10 |", "|---:|---|---:|---:|---:|---:|"]
    for n in sizes:
        v = clustered_vectors(n, dim, centres, rng)
        queries = v[rng.choice(n, size=100 if n < 1_000_000 else 30, replace=False)] + 0.01
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        lines += _faiss_rows(v, queries)
    faiss.omp_set_num_threads(2)
    return [*lines, "", "Goal at 1M: recall@10 ≥ 0.95 with p50 ≤ 2 ms per query on one core.", ""]


# the parts `python -m benchmarks.run [part ...]` runs, in RESULTS.md's order, and the heading each writes
TITLES = {"generator": "## Synthetic generator", "ingest": "## Ingest", "deid": "## De-identification",
          "ocr": "## Burned-in text detection", "recall": "## Burned-in text recall", "images": "## Images", "embeddings": "## Embeddings", "faiss": "## FAISS",
          "filtered_search": "## Filtered search",
          "mip": "## MedImageParse segmenter against the stub endpoint", "segmentation": "## Segmentation",
          "chaos": "## Chaos and load", "dbt": "## dbt build",
          "sql": "## SQL over the lake", "scaling": "## Scaling run",
          "objectstore": "## Object-store root (Azurite)", "dicomweb": "## DICOMweb pull",
          "cstore": "## C-STORE listener", "adapter": "## Retrieval adapter", "hostile": "## Hostile input"}
PARTS = tuple(TITLES)


def _title(line: str) -> str:
    """A section's identity: its `## ` heading up to any parenthesis (``## Chaos and load (issue 9)`` → ``## Chaos and load``)."""
    return line.split(" (", 1)[0].strip()


def _sections(text: str) -> tuple[list[str], list[list[str]]]:
    """RESULTS.md split into its header lines and its `## ` sections (each a list of lines)."""
    header: list[str] = []
    sections: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            header.append(line)
    return header, sections


def write_results(measured: dict[str, list[str]]) -> None:
    """Rewrite RESULTS.md: sections measured now replace their namesakes; sections of parts not run keep their
    previous figures, and sections this script does not know are kept after them, in their order."""
    old_header, old = _sections(RESULTS.read_text()) if RESULTS.exists() else ([], [])
    kept = {_title(s[0]): s for s in old}
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    if len(measured) == len(PARTS):
        dated = f"Written by `make bench` on {now} UTC."
    else:
        full = next((m.group(1) for line in old_header if (m := re.search(r"make bench` on ([\d: -]+) UTC", line))),
                    "an earlier run")
        dated = f"Written by `make bench` on {full} UTC; a section re-measured since says when."
        stamp = f"_Re-measured on {now} UTC by `python -m benchmarks.run {' '.join(measured)}`._"
        measured = {part: [lines[0], "", stamp, *lines[1:]] for part, lines in measured.items()}
    body = [line for part in PARTS for line in measured.get(part) or kept.get(TITLES[part], [])]
    body += [line for title, section in kept.items() if title not in TITLES.values() for line in section]
    header = ["# Benchmark results", "", f"{dated} Machine: {machine()}.", f"Each figure is the best of {REPEATS} runs.", ""]
    RESULTS.write_text("\n".join(header + body).rstrip("\n") + "\n")


def main(parts: list[str]) -> None:
    """Run the named parts (all when none), then rewrite RESULTS.md keeping every section not re-measured."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; choose from: {' '.join(PARTS)}")
    chosen = [p for p in PARTS if p in parts] if parts else list(PARTS)
    work = Path(__file__).parent / "_work"
    work.mkdir(exist_ok=True)
    measured: dict[str, list[str]] = {}
    try:
        if {"generator", "ingest", "embeddings"} & set(chosen):
            gen_lines, synthetic = bench_generator(work)
            measured["generator"] = gen_lines
        if "ingest" in chosen:
            measured["ingest"] = bench_ingest(work, synthetic)
        if "deid" in chosen:
            measured["deid"] = bench_deid(work)
        if "ocr" in chosen:
            measured["ocr"] = bench_ocr()
        if "hostile" in chosen:
            from benchmarks.hostile import bench_hostile

            measured["hostile"] = bench_hostile(work)
        if "recall" in chosen:
            from benchmarks.recall import bench_recall

            measured["recall"] = bench_recall(work)
        if "images" in chosen:
            measured["images"] = bench_images(work)
        if "embeddings" in chosen:
            measured["embeddings"] = bench_embeddings(synthetic)
        if "faiss" in chosen:
            measured["faiss"] = bench_faiss()
        if "filtered_search" in chosen:
            from benchmarks.filtered_search import bench_filtered_search

            measured["filtered_search"] = bench_filtered_search()
        if "mip" in chosen:
            from benchmarks.mip import bench_mip

            measured["mip"] = bench_mip()
        if "segmentation" in chosen:
            from benchmarks.segmentation import bench_segmentation

            measured["segmentation"] = bench_segmentation(REPEATS)
        if "chaos" in chosen:
            from benchmarks.chaos import bench_chaos

            measured["chaos"] = bench_chaos(work / "chaos")
        if "dbt" in chosen:
            from benchmarks.dbt import bench_dbt

            measured["dbt"] = bench_dbt(work / "dbt", REPEATS)
        if "sql" in chosen:
            from benchmarks.sql import bench_sql

            measured["sql"] = bench_sql(work / "sql", REPEATS)
        if "scaling" in chosen:
            from benchmarks.scaling import bench_scaling

            measured["scaling"] = bench_scaling(work / "scaling")
        if "objectstore" in chosen:
            from benchmarks.objectstore import bench_objectstore

            measured["objectstore"] = bench_objectstore(work / "objectstore")
        if "dicomweb" in chosen:
            from benchmarks.dicomweb import bench_dicomweb

            measured["dicomweb"] = bench_dicomweb(work / "dicomweb")
        if "cstore" in chosen:
            from benchmarks.cstore import bench_cstore

            measured["cstore"] = bench_cstore(work / "cstore", REPEATS)
        if "adapter" in chosen:
            from benchmarks.adapter import bench_adapter

            measured["adapter"] = bench_adapter(work / "adapter")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results({p: measured[p] for p in PARTS if p in measured})
    print(RESULTS.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
