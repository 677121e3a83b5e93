"""Settings: the storage root, its zones and the landing folder, read from the environment in one place.

The storage root may be a local path or an object-store URI (``az://…``, ``s3://…``). With a URI the Delta
tables live in the store and every file zone has a local working copy under ``work_dir``, kept in step with the
store by :mod:`hca_assets.storage` (claiming needs an atomic rename, so the landing zone is always local).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hca_assets.export.destinations import parse_destination
from hca_assets.routing import parse_rules
from hca_assets.segmentation import BACKENDS

__all__ = ["DEFAULT_LIMITS", "EXECUTORS", "Limits", "Settings", "is_uri", "join"]

DEFAULT_DATA_DIR = "./data"
# How a run executes its steps (hca_assets/executors.py): "default" is Dagster's (multiprocess, or in-process
# under `materialize`); celery and k8s are the deployments of deploy/ (README "Deployment").
EXECUTORS = ("default", "in_process", "multiprocess", "celery", "k8s")


def is_uri(location: str) -> bool:
    """True for object-store URIs such as ``s3://bucket/x``; False for local paths."""
    return "://" in location and not location.startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local path or an object-store URI."""
    if is_uri(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root.removeprefix("file://")).joinpath(*parts))


@dataclass(frozen=True)
class Limits:
    """Per-file resource limits, checked before a file is decoded; an input over one is quarantined.

    - ``max_pixels`` (2^27 samples = rows × columns × frames × samples per pixel): rendering peaks at
      ~10 bytes per sample (measured), so two workers at the limit stay under ~3 GB on top of the
      interpreter, and a 16384² decompression bomb (2^28) is refused. It admits a 512³ volume, 4096² × 8
      frames, 1024² × 128 cine frames; digital breast tomosynthesis and whole-slide levels need more.
    - ``max_file_bytes`` (2^27 × 8 = 1 GiB): the largest uncompressed instance the pixel limit admits
      (64-bit float samples); nothing bigger can be a valid one.
    - ``file_timeout_seconds`` (300 s) per file and stage: the slowest instance within the pixel limit,
      an RGB 640×480 ultrasound cine of ~145 frames OCR'd twice at ~0.5 s per frame, takes ~150 s.
      0 turns the timeout off (files then run in the calling process, e.g. under a debugger).
    """

    max_pixels: int = 1 << 27
    max_file_bytes: int = (1 << 27) * 8
    file_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_file_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}")
        if self.file_timeout_seconds < 0:
            raise ValueError(f"`file_timeout_seconds` must be >= 0 (0: no timeout), got {self.file_timeout_seconds}")

    @property
    def timeout(self) -> float | None:
        """The per-file timeout for :func:`hca_assets._parallel.ordered_map`; None when it is off (0), and then
        files are processed in the calling process."""
        return self.file_timeout_seconds or None


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Settings:
    """Where everything lives. ``data_dir`` (default ``./data`` of the working directory) is made absolute
    when the settings are built. Zones under it:

    - ``restricted/`` (0700): PHI-bearing — claimed raw batches, the raw index table, crosswalks,
      quarantined files, the pseudonymisation key and its pin;
    - ``lake/``: PHI-free Delta tables;
    - ``images/``, ``indexes/``: derived, PHI-free files.
    """

    data_dir: str = DEFAULT_DATA_DIR
    landing_dir: str | None = None
    settle_seconds: float = 2.0
    handoff_seconds: float = 60.0
    max_resumes: int = 3
    workers: int = 2
    deid_options: tuple[str, ...] = ("rtn_long_modif_dates", "rtn_pat_chars")
    ocr_mode: str = "all"
    deid_net: bool = True
    deid_net_every: int = 10
    deid_check_pixels: int = 8
    uid_map: str | None = None
    patient_map: str | None = None
    embedder: str = "local"
    segmenter: str = "local"
    mip_concurrency: int = 2
    mip_model_version: str = "medimageparse-1"
    mip_deployment: str | None = None
    cxr_model_version: str = "cxrreportgen-1"
    cxr_deployment: str | None = None
    seg_onnx_model: str | None = None
    seg_onnx_labels: str | None = None
    eval_min_p5: float = 0.9
    seg_min_dice: float = 0.8
    seg_reference_dir: str | None = None
    max_constant_fraction: float = 0.05
    max_pixels: int = Limits.max_pixels
    max_file_bytes: int = Limits.max_file_bytes
    file_timeout_seconds: float = Limits.file_timeout_seconds
    priority_rules: str = ""
    export_destination: str = ""  # STOW-RS root (http(s)://…) or dicom://CALLED_AE@host:port; empty: export off
    export_calling_ae: str = "HCA"  # our AE title when exporting by C-STORE
    export_retries: int = 3  # attempts per study, with exponential backoff between them
    vacuum_retention_hours: float = 168.0  # Delta vacuum keeps files a version needed this recently (≥ 7 days)
    executor: str = "default"
    work_dir: str | None = None
    cstore_stable_seconds: float = 10.0  # a C-STORE study is complete this long after its last instance (associations ended)
    cstore_max_associations: int = 16  # concurrent associations `hca listen` serves; more are refused
    cstore_max_per_caller: int = 4  # of which one calling AE title may hold (a flooding peer leaves room for others)
    dicomweb_cursor: str = "qido"  # how the DICOMweb poller finds new studies: qido (StudyDate) | orthanc-changes
    dicomweb_lookback_days: int = 1  # qido cursor: studies dated this many days before the last poll are searched again
    dicomweb_retries: int = 4  # retries of a DICOMweb request on 429/5xx/connection errors (backoff doubles each time)
    dicomweb_backoff_seconds: float = 0.5
    dicomweb_timeout_seconds: float = 60.0  # per HTTP request (connect, and between bytes of a retrieve)
    drift_reference_batches: int = 3  # the earliest N batches of an embedding code_version are the drift reference
    drift_alpha: float = 0.01  # drift needs a permutation p-value below this …
    drift_min_mmd2: float = 0.02  # … and an MMD² above the reference's own spread, never below this floor
    drift_permutations: int = 200
    drift_max_samples: int = 1000  # vectors per side the MMD test samples (cost ∝ square); OOD keeps twice as many
    ood_k: int = 5  # an instance's OOD score is its distance to the k-th nearest reference vector
    ood_quantile: float = 0.99  # of the reference's own leave-one-patient-out distances: the OOD threshold
    ood_max_fraction: float = 0.5  # the blocking check fails a batch with more OOD instances than this
    sql_timeout_seconds: float = 60.0  # one `hca sql` statement, wall clock: its process is killed after this
    sql_memory_mb: int = 2048  # address space of that process (DuckDB's own limit is three quarters of it)
    sql_max_rows: int = 1_000_000  # rows one `hca sql` result may have (add a LIMIT or aggregate for more)

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise ValueError("`data_dir` must be a path or URI, got an empty string")
        if not is_uri(self.data_dir):  # resolved once: every zone (and the key) is in one folder wherever code runs
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir.removeprefix("file://")))
        if self.settle_seconds < 0:
            raise ValueError(f"`settle_seconds` must be >= 0, got {self.settle_seconds}")
        if self.handoff_seconds < 0:
            raise ValueError(f"`handoff_seconds` must be >= 0, got {self.handoff_seconds}")
        if self.max_resumes < 0:
            raise ValueError(f"`max_resumes` must be >= 0, got {self.max_resumes}")
        if self.workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {self.workers}")
        if self.deid_net_every < 1:
            raise ValueError(f"`deid_net_every` must be >= 1, got {self.deid_net_every}")
        if self.deid_check_pixels < 0:
            raise ValueError(f"`deid_check_pixels` must be >= 0, got {self.deid_check_pixels}")
        if self.segmenter not in BACKENDS:
            raise ValueError(f"`segmenter` must be one of {', '.join(BACKENDS)}, got {self.segmenter!r}")
        if self.mip_concurrency < 1:
            raise ValueError(f"`mip_concurrency` must be >= 1, got {self.mip_concurrency}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"`executor` must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        self.limits  # noqa: B018 - validates them
        parse_rules(self.priority_rules)  # a malformed rule fails here, not in the sensor
        parse_destination(self.export_destination, self.export_calling_ae)  # likewise a malformed destination
        if self.export_retries < 1:
            raise ValueError(f"`export_retries` must be >= 1, got {self.export_retries}")
        if self.cstore_stable_seconds < 0:
            raise ValueError(f"`cstore_stable_seconds` must be >= 0, got {self.cstore_stable_seconds}")
        if not 1 <= self.cstore_max_per_caller <= self.cstore_max_associations:
            raise ValueError(f"`cstore_max_per_caller` must be between 1 and `cstore_max_associations` "
                             f"({self.cstore_max_associations}), got {self.cstore_max_per_caller}")
        if self.dicomweb_cursor not in ("qido", "orthanc-changes"):
            raise ValueError(f"`dicomweb_cursor` must be qido or orthanc-changes, got {self.dicomweb_cursor!r}")
        if self.dicomweb_lookback_days < 0 or self.dicomweb_retries < 0 or self.dicomweb_backoff_seconds < 0:
            raise ValueError("`dicomweb_lookback_days`, `dicomweb_retries` and `dicomweb_backoff_seconds` must be >= 0")
        if self.dicomweb_timeout_seconds <= 0:
            raise ValueError(f"`dicomweb_timeout_seconds` must be > 0, got {self.dicomweb_timeout_seconds}")
        if self.drift_reference_batches < 1 or self.drift_permutations < 1 or self.drift_max_samples < 2 or self.ood_k < 1:
            raise ValueError("`drift_reference_batches`, `drift_permutations` and `ood_k` must be >= 1, "
                             "`drift_max_samples` >= 2")
        for name in ("drift_alpha", "ood_quantile", "ood_max_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in (0, 1], got {getattr(self, name)}")
        if self.drift_min_mmd2 < 0:
            raise ValueError(f"`drift_min_mmd2` must be >= 0, got {self.drift_min_mmd2}")
        if self.sql_timeout_seconds <= 0 or self.sql_memory_mb < 1024 or self.sql_max_rows < 1:
            raise ValueError("`sql_timeout_seconds` must be > 0, `sql_memory_mb` >= 1024 (the lake's readers start "
                             "threads and runtimes within it) and `sql_max_rows` >= 1")
        if self.vacuum_retention_hours < 168:
            raise ValueError(f"`vacuum_retention_hours` must be >= 168 (7 days: readers of recent versions and "
                             f"concurrent writers keep their files), got {self.vacuum_retention_hours}")

    @classmethod
    def from_env(cls) -> Settings:
        """Read ``HCA_DATA_DIR``, ``HCA_LANDING_DIR``, ``HCA_SETTLE_SECONDS``, ``HCA_HANDOFF_SECONDS`` (how long
        a batch the landing sensor handed to the Dagster daemon waits for its run before ``hca ingest`` runs
        it instead), ``HCA_MAX_RESUMES`` (how many times a batch whose runs keep dying — out of memory? — is run
        again before it is left failed), ``HCA_WORKERS`` and the
        de-identification choices ``HCA_DEID_OPTIONS`` (comma-separated Table E.1-1 option columns),
        ``HCA_DEID_OCR`` (all | candidates | off: which images are screened for burned-in text), ``HCA_DEID_NET``
        (1 | 0: the learned text detector reads every single-frame image and a sample of each series whatever the
        screen says) and ``HCA_DEID_NET_EVERY`` (of a series the net reads every N-th slice besides first, middle,
        last and each whose screen result differs from a neighbour's), ``HCA_DEID_CHECK_PIXELS`` (how many staged files
        of a batch, at least, ``no_phi_residue`` reads with OCR for PHI of their originals; 0: none), ``HCA_DEID_UID_MAP`` / ``HCA_DEID_PATIENT_MAP`` (CSV);
        ``HCA_EMBEDDER`` (backend); ``HCA_SEGMENTER`` (local | azure | onnx) with ``HCA_MIP_CONCURRENCY`` (slice
        requests in flight per series), ``HCA_MIP_MODEL_VERSION``, ``HCA_MIP_DEPLOYMENT`` (the endpoint's URL and key,
        ``HCA_MIP_ENDPOINT`` / ``HCA_MIP_KEY``, are secrets: resources, not settings); ``HCA_CXR_MODEL_VERSION`` and ``HCA_CXR_DEPLOYMENT``
        (CXRReportGen; its ``HCA_CXR_ENDPOINT`` / ``HCA_CXR_KEY`` are resources too), ``HCA_SEG_ONNX_MODEL`` and
        ``HCA_SEG_ONNX_LABELS`` (default: the model's path with ``.json``); ``HCA_EVAL_MIN_P5``, ``HCA_SEG_MIN_DICE``
        and ``HCA_MAX_CONSTANT_FRACTION`` (check floors); ``HCA_SEG_REFERENCE_DIR`` (user reference masks ``<series>/<structure>.nii.gz``);
        per-file limits ``HCA_MAX_PIXELS``, ``HCA_MAX_FILE_BYTES``, ``HCA_FILE_TIMEOUT_SECONDS``;
        ``HCA_PRIORITY_RULES`` (``LEVEL:source=value,...``, see :mod:`hca_assets.routing`; empty: no routing);
        ``HCA_EXPORT_DESTINATION``, ``HCA_EXPORT_CALLING_AE``, ``HCA_EXPORT_RETRIES`` (where the ``export`` asset sends
        results, :mod:`hca_assets.export.destinations`; its credentials ``HCA_EXPORT_USER`` / ``HCA_EXPORT_PASSWORD``
        / ``HCA_EXPORT_TOKEN`` are secrets: a resource, not settings);
        ``HCA_VACUUM_RETENTION_HOURS`` (Delta maintenance: files older versions needed are deleted after this, ≥ 168);
        ``HCA_EXECUTOR`` (one of :data:`EXECUTORS`); ``HCA_WORK_DIR`` (the local working copy of an object-store
        root; default ``~/.cache/hca/<hash of the root>``); the C-STORE listener's ``HCA_CSTORE_STABLE_SECONDS``
        (a study is complete when its associations ended and nothing arrived for this long),
        ``HCA_CSTORE_MAX_ASSOCIATIONS`` and ``HCA_CSTORE_MAX_PER_CALLER`` (concurrent associations, per calling AE); the DICOMweb
        poller's ``HCA_DICOMWEB_CURSOR`` (qido | orthanc-changes), ``HCA_DICOMWEB_LOOKBACK_DAYS``, ``HCA_DICOMWEB_RETRIES``,
        ``HCA_DICOMWEB_BACKOFF_SECONDS``, ``HCA_DICOMWEB_TIMEOUT_SECONDS`` (its URL and credentials ``HCA_DICOMWEB_URL``,
        ``HCA_DICOMWEB_USER`` / ``HCA_DICOMWEB_PASSWORD`` or ``HCA_DICOMWEB_TOKEN`` are resources, not settings); embedding drift
        (:mod:`hca_assets.evaluation.drift`): ``HCA_DRIFT_REFERENCE_BATCHES``, ``HCA_DRIFT_ALPHA``, ``HCA_DRIFT_MIN_MMD2``,
        ``HCA_DRIFT_PERMUTATIONS``, ``HCA_DRIFT_MAX_SAMPLES``, ``HCA_OOD_K``, ``HCA_OOD_QUANTILE``, ``HCA_OOD_MAX_FRACTION``;
        bounds of one ``hca sql`` statement: ``HCA_SQL_TIMEOUT_SECONDS``, ``HCA_SQL_MEMORY_MB``, ``HCA_SQL_MAX_ROWS``."""
        return cls(
            data_dir=os.environ.get("HCA_DATA_DIR", DEFAULT_DATA_DIR),
            landing_dir=os.environ.get("HCA_LANDING_DIR") or None,
            settle_seconds=float(os.environ.get("HCA_SETTLE_SECONDS", "2")),
            handoff_seconds=float(os.environ.get("HCA_HANDOFF_SECONDS", str(cls.handoff_seconds))),
            max_resumes=int(os.environ.get("HCA_MAX_RESUMES", str(cls.max_resumes))),
            workers=int(os.environ.get("HCA_WORKERS", str(min(2, os.cpu_count() or 1)))),
            deid_options=tuple(o for o in os.environ.get("HCA_DEID_OPTIONS", ",".join(cls.deid_options)).split(",") if o),
            ocr_mode=os.environ.get("HCA_DEID_OCR", cls.ocr_mode),
            deid_net=os.environ.get("HCA_DEID_NET", "1").strip().lower() not in ("0", "false", "no", "off"),
            deid_net_every=int(os.environ.get("HCA_DEID_NET_EVERY", str(cls.deid_net_every))),
            deid_check_pixels=int(os.environ.get("HCA_DEID_CHECK_PIXELS", str(cls.deid_check_pixels))),
            uid_map=os.environ.get("HCA_DEID_UID_MAP") or None,
            patient_map=os.environ.get("HCA_DEID_PATIENT_MAP") or None,
            embedder=os.environ.get("HCA_EMBEDDER", cls.embedder),
            segmenter=os.environ.get("HCA_SEGMENTER", cls.segmenter),
            mip_concurrency=int(os.environ.get("HCA_MIP_CONCURRENCY", str(cls.mip_concurrency))),
            mip_model_version=os.environ.get("HCA_MIP_MODEL_VERSION", cls.mip_model_version),
            mip_deployment=os.environ.get("HCA_MIP_DEPLOYMENT") or None,
            cxr_model_version=os.environ.get("HCA_CXR_MODEL_VERSION", cls.cxr_model_version),
            cxr_deployment=os.environ.get("HCA_CXR_DEPLOYMENT") or None,
            seg_onnx_model=os.environ.get("HCA_SEG_ONNX_MODEL") or None,
            seg_onnx_labels=os.environ.get("HCA_SEG_ONNX_LABELS") or None,
            eval_min_p5=float(os.environ.get("HCA_EVAL_MIN_P5", str(cls.eval_min_p5))),
            seg_min_dice=float(os.environ.get("HCA_SEG_MIN_DICE", str(cls.seg_min_dice))),
            seg_reference_dir=os.environ.get("HCA_SEG_REFERENCE_DIR") or None,
            max_constant_fraction=float(os.environ.get("HCA_MAX_CONSTANT_FRACTION", str(cls.max_constant_fraction))),
            max_pixels=int(os.environ.get("HCA_MAX_PIXELS", str(cls.max_pixels))),
            max_file_bytes=int(os.environ.get("HCA_MAX_FILE_BYTES", str(cls.max_file_bytes))),
            file_timeout_seconds=float(os.environ.get("HCA_FILE_TIMEOUT_SECONDS", str(cls.file_timeout_seconds))),
            priority_rules=os.environ.get("HCA_PRIORITY_RULES", cls.priority_rules),
            export_destination=os.environ.get("HCA_EXPORT_DESTINATION", cls.export_destination),
            export_calling_ae=os.environ.get("HCA_EXPORT_CALLING_AE", cls.export_calling_ae),
            export_retries=int(os.environ.get("HCA_EXPORT_RETRIES", str(cls.export_retries))),
            vacuum_retention_hours=float(os.environ.get("HCA_VACUUM_RETENTION_HOURS", str(cls.vacuum_retention_hours))),
            executor=os.environ.get("HCA_EXECUTOR", cls.executor),
            work_dir=os.environ.get("HCA_WORK_DIR") or None,
            cstore_stable_seconds=float(os.environ.get("HCA_CSTORE_STABLE_SECONDS", str(cls.cstore_stable_seconds))),
            cstore_max_associations=int(os.environ.get("HCA_CSTORE_MAX_ASSOCIATIONS", str(cls.cstore_max_associations))),
            cstore_max_per_caller=int(os.environ.get("HCA_CSTORE_MAX_PER_CALLER", str(cls.cstore_max_per_caller))),
            dicomweb_cursor=os.environ.get("HCA_DICOMWEB_CURSOR", cls.dicomweb_cursor),
            dicomweb_lookback_days=int(os.environ.get("HCA_DICOMWEB_LOOKBACK_DAYS", str(cls.dicomweb_lookback_days))),
            dicomweb_retries=int(os.environ.get("HCA_DICOMWEB_RETRIES", str(cls.dicomweb_retries))),
            dicomweb_backoff_seconds=float(os.environ.get("HCA_DICOMWEB_BACKOFF_SECONDS", str(cls.dicomweb_backoff_seconds))),
            dicomweb_timeout_seconds=float(os.environ.get("HCA_DICOMWEB_TIMEOUT_SECONDS", str(cls.dicomweb_timeout_seconds))),
            drift_reference_batches=int(os.environ.get("HCA_DRIFT_REFERENCE_BATCHES", str(cls.drift_reference_batches))),
            drift_alpha=float(os.environ.get("HCA_DRIFT_ALPHA", str(cls.drift_alpha))),
            drift_min_mmd2=float(os.environ.get("HCA_DRIFT_MIN_MMD2", str(cls.drift_min_mmd2))),
            drift_permutations=int(os.environ.get("HCA_DRIFT_PERMUTATIONS", str(cls.drift_permutations))),
            drift_max_samples=int(os.environ.get("HCA_DRIFT_MAX_SAMPLES", str(cls.drift_max_samples))),
            ood_k=int(os.environ.get("HCA_OOD_K", str(cls.ood_k))),
            ood_quantile=float(os.environ.get("HCA_OOD_QUANTILE", str(cls.ood_quantile))),
            ood_max_fraction=float(os.environ.get("HCA_OOD_MAX_FRACTION", str(cls.ood_max_fraction))),
            sql_timeout_seconds=float(os.environ.get("HCA_SQL_TIMEOUT_SECONDS", str(cls.sql_timeout_seconds))),
            sql_memory_mb=int(os.environ.get("HCA_SQL_MEMORY_MB", str(cls.sql_memory_mb))),
            sql_max_rows=int(os.environ.get("HCA_SQL_MAX_ROWS", str(cls.sql_max_rows))),
        )

    @property
    def limits(self) -> Limits:
        """The per-file resource limits these settings set."""
        return Limits(self.max_pixels, self.max_file_bytes, self.file_timeout_seconds)

    # zones -------------------------------------------------------------------------------------
    @property
    def local_root(self) -> str:
        """Where files are read and written: ``data_dir`` itself, or the working copy of an object-store root."""
        if not is_uri(self.data_dir):
            return self.data_dir
        if self.work_dir:
            return os.path.abspath(self.work_dir)
        digest = hashlib.sha256(self.data_dir.encode()).hexdigest()[:16]
        return os.path.join(os.path.expanduser("~"), ".cache", "hca", digest)

    @property
    def landing(self) -> str:
        return self.landing_dir or join(self.local_root, "landing")

    @property
    def restricted(self) -> str:
        return join(self.local_root, "restricted")

    @property
    def incoming(self) -> str:
        """Studies a network source (C-STORE, DICOMweb) is still collecting, released whole into landing (PHI)."""
        return join(self.restricted, "incoming")

    @property
    def raw_batches(self) -> str:
        """Claimed batches of raw files, one folder per ingest batch (PHI)."""
        return join(self.restricted, "raw")

    @property
    def quarantine(self) -> str:
        """Quarantined input files, kept whole (they may carry PHI, so they stay restricted)."""
        return join(self.restricted, "quarantine")

    @property
    def deid_staging(self) -> str:
        """De-identified files awaiting their checks (kept restricted until they pass)."""
        return join(self.restricted, "staging", "deid")

    @property
    def deid(self) -> str:
        """Published de-identified DICOM (PHI-free zone), one folder per batch."""
        return join(self.local_root, "deid")

    @property
    def truth_file(self) -> str:
        """Ground truth of synthetic studies (original UIDs: restricted)."""
        return join(self.restricted, "synthetic_truth", "instances.jsonl")

    @property
    def lake(self) -> str:
        return join(self.data_dir, "lake")

    @property
    def segmentations(self) -> str:
        """Masks (NIfTI per structure) and DICOM SEG per series, of de-identified images (PHI-free)."""
        return join(self.local_root, "segmentations")

    @property
    def images(self) -> str:
        return join(self.local_root, "images")

    @property
    def exports(self) -> str:
        """FHIR ImagingStudy JSON of exported studies, one folder per batch (pseudonymous: PHI-free)."""
        return join(self.local_root, "exports")

    @property
    def indexes(self) -> str:
        return join(self.local_root, "indexes")

    @property
    def feedback(self) -> str:
        """The drop folder of reviewer verdict CSVs (``hca_assets.evaluation.feedback``), read by the feedback asset."""
        return join(self.local_root, "feedback")

    @property
    def dagster_home(self) -> str:
        return join(self.local_root, "dagster_home")

    @property
    def dbt_runs(self) -> str:
        """dbt's target and logs of each build (``<run id>/``; removed when the build passed)."""
        return join(self.local_root, "dbt")

    @property
    def warehouse(self) -> str:
        """The DuckDB file dbt builds the marts into (PHI-free; dbt/profiles.yml names the same file)."""
        return join(self.local_root, "warehouse", "analytics.duckdb")

    @property
    def key_file(self) -> str:
        """The pseudonymisation key when ``HCA_DEID_KEY`` is not set: always inside this data folder."""
        return join(self.restricted, "hca.key")

    @property
    def key_pin(self) -> str:
        """Fingerprint of the key this data folder's lake was built with (and of retired keys)."""
        return join(self.restricted, "key_pin.json")

    def ensure_restricted(self) -> None:
        """Create the restricted zone and the default landing zone owner-only (0700), or narrow existing ones.

        Nothing under them — landed and raw files, quarantine copies, crosswalk, Delta files, key — is then
        reachable by other users, whatever the modes of the files inside. A landing folder set by
        ``HCA_LANDING_DIR`` is the site's drop folder and keeps its mode (uploaders may be other users); what the
        network sources release into it is 0700 / 0600 itself. Object-store roots rely on bucket policy.
        """
        for zone in (self.restricted, *([] if self.landing_dir else [self.landing])):
            if is_uri(zone):
                continue
            path = Path(zone)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if stat.S_IMODE(path.stat().st_mode) != 0o700:
                path.chmod(0o700)

    @property
    def restricted_tables(self) -> str:
        """The restricted Delta tables (raw index, crosswalk): in ``data_dir`` itself, which may be a store."""
        return join(self.data_dir, "restricted", "tables")

    def table_uri(self, name: str, *, restricted: bool = False) -> str:
        """Location of Delta table ``name``: under ``restricted/tables`` or ``lake/`` of ``data_dir``."""
        return join(self.restricted_tables, name) if restricted else join(self.lake, name)
