"""Settings: every ``HCA_*`` variable as one typed field (its environment name, default, check and meaning), the
storage root, its zones and the landing folder. Nothing else reads ``HCA_*`` settings from the environment; secrets
are named in :mod:`hca_assets.config.secrets` and reach Dagster as ``EnvVar``s.

The storage root may be a local path or an object-store URI (``az://…``, ``s3://…``). With a URI the Delta
tables live in the store and every file zone has a local working copy under ``work_dir``, kept in step with the
store by :mod:`hca_assets._infra.storage` (claiming needs an atomic rename, so the landing zone is always local).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hca_assets.config.destinations import parse_destination
from hca_assets.config.limits import Limits
from hca_assets.config.priority_rules import parse_rules

__all__ = ["DEFAULT_DATA_DIR", "EMBEDDERS", "EXECUTORS", "SEGMENTERS", "Settings", "is_uri", "join"]

DEFAULT_DATA_DIR = "./data"
# How a run executes its steps (hca_assets/orchestration/executors.py): "default" is Dagster's (multiprocess, or
# in-process under `materialize`); celery and k8s are the deployments of deploy/ (docs "Operations").
EXECUTORS = ("default", "in_process", "multiprocess", "celery", "k8s")
EMBEDDERS = ("efficientnet", "local", "azure", "onnx")  # the embedding protocol's backends (hca_assets.models)
SEGMENTERS = ("local", "azure", "onnx")  # the segmenter protocol's backends (hca_assets.segmentation.backends)
OCR_MODES = ("all", "candidates", "off")
DICOMWEB_CURSORS = ("qido", "orthanc-changes")
_FALSE = ("0", "false", "no", "off")
_UNSET = object()  # an empty variable of a field whose default it keeps


def is_uri(location: str) -> bool:
    """True for object-store URIs such as ``s3://bucket/x``; False for local paths."""
    return "://" in location and not location.startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local path or an object-store URI."""
    if is_uri(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root.removeprefix("file://")).joinpath(*parts))


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


Check = Callable[[str, Any], str | None]  # (field name, value) -> why the value is refused, or None


def _at_least(low: float) -> Check:
    return lambda name, v: None if v >= low else f"`{name}` must be >= {low:g}, got {v!r}"


def _above(low: float) -> Check:
    return lambda name, v: None if v > low else f"`{name}` must be > {low:g}, got {v!r}"


def _fraction(name: str, v: float) -> str | None:
    return None if 0.0 < v <= 1.0 else f"`{name}` must be in (0, 1], got {v!r}"


def _one_of(*choices: str) -> Check:
    return lambda name, v: None if v in choices else f"`{name}` must be one of {', '.join(choices)}, got {v!r}"


def _parses(parse: Callable[[str], object]) -> Check:
    """Accepted when ``parse`` accepts it; refused with the parser's own message, which never repeats the value
    (a destination URL may carry credentials)."""
    def check(name: str, v: str) -> str | None:
        try:
            parse(v)
        except ValueError as exc:
            return str(exc)
        return None
    return check


def setting(default: Any, meaning: str, *, env: str | None = None, check: Check | None = None,
            factory: Callable[[], Any] | None = None, shown: str | None = None) -> Any:
    """A settings field: its default (or ``factory``), its meaning, its variable (default ``HCA_<NAME>``), a
    ``check`` saying why a value is refused (None: accepted) and how the reference shows the default."""
    metadata = {"meaning": meaning, "env": env, "check": check, "shown": shown}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Where everything lives and how each stage behaves; ``data_dir`` is made absolute when the settings are
    built. Zones under it: ``restricted/`` (0700, PHI-bearing: claimed raw batches, the raw index, crosswalks,
    quarantine, the key and its pin), ``lake/`` (PHI-free Delta tables), ``images/``, ``indexes/`` (PHI-free files).
    """

    # storage ---------------------------------------------------------------------------------------------
    data_dir: str = setting(DEFAULT_DATA_DIR, "The storage root: a local folder or an object-store URI (`az://`, "
                            "`abfss://`, `s3://`, `gs://`).")
    landing_dir: str | None = setting(None, "The landing (drop) folder; default `<data>/landing` (made 0700). A folder "
                                      "set here keeps its mode.")
    work_dir: str | None = setting(None, "The local working copy of an object-store root.",
                                   shown="~/.cache/hca/<hash of the root>")
    store_retry_seconds: float = setting(30.0, "How long one object-store request keeps being retried on 429/5xx "
                                         "before the run fails.", check=_above(0))
    # landing and runs ------------------------------------------------------------------------------------
    settle_seconds: float = setting(2.0, "A landed file is claimed once it has not changed for this long.",
                                    check=_at_least(0))
    handoff_seconds: float = setting(60.0, "How long a batch handed to the Dagster daemon waits for its run before "
                                     "`hca ingest` runs it instead.", check=_at_least(0))
    max_resumes: int = setting(3, "How many times a batch whose runs keep dying (out of memory?) is run again "
                               "before it is left failed.", check=_at_least(0))
    workers: int = setting(None, "Worker processes of the per-file stages (ingest, de-identification, images).",
                           factory=_default_workers, shown="min(2, CPUs)", check=_at_least(1))
    executor: str = setting("default", "How a run executes its steps.", check=_one_of(*EXECUTORS))
    priority_rules: str = setting("", "Priority routing, `LEVEL:source=value,...` (sources folder, priority, ae); "
                                  "empty: no routing.", check=_parses(parse_rules))
    # de-identification -----------------------------------------------------------------------------------
    deid_options: tuple[str, ...] = setting(("rtn_long_modif_dates", "rtn_pat_chars"), "PS3.15 Table E.1-1 option "
                                            "columns applied beyond the Basic Profile (comma-separated).")
    ocr_mode: str = setting("all", "Which images are screened for burned-in text: all, candidates or off.",
                            env="HCA_DEID_OCR", check=_one_of(*OCR_MODES))
    deid_net: bool = setting(True, "The learned text detector reads every single-frame image and a sample of each "
                             "series whatever the screen says (1 or 0).")
    deid_net_every: int = setting(10, "Of a series the net reads every N-th slice besides first, middle, last and "
                                  "each whose screen differs from a neighbour's.", check=_at_least(1))
    deid_check_pixels: int = setting(8, "How many staged files of a batch, at least, `no_phi_residue` reads with OCR "
                                     "for PHI of their originals (0: none).", check=_at_least(0))
    uid_map: str | None = setting(None, "CSV `id_old,id_new` of UIDs to map instead of hashing.",
                                  env="HCA_DEID_UID_MAP")
    patient_map: str | None = setting(None, "CSV `id_old,id_new` of patient IDs to map.", env="HCA_DEID_PATIENT_MAP")
    # per-file limits -------------------------------------------------------------------------------------
    max_pixels: int = setting(Limits.max_pixels, "Samples (rows x columns x frames x samples per pixel) one file may "
                              "hold; larger ones are quarantined before decoding.", check=_above(0))
    max_file_bytes: int = setting(Limits.max_file_bytes, "Bytes one file (inflated) may hold.", check=_above(0))
    file_timeout_seconds: float = setting(Limits.file_timeout_seconds, "Seconds one file may take in one stage "
                                          "(0: no timeout, files run in the calling process).", check=_at_least(0))
    # models ----------------------------------------------------------------------------------------------
    embedder: str = setting("local", "The embedding backend: local (image statistics, fastest), efficientnet "
                            "(ImageNet EfficientNet-Lite0, shipped, offline), azure (MedImageInsight) or onnx (your "
                            "model).", check=_one_of(*EMBEDDERS))
    embed_threads: int = setting(None, "onnxruntime threads of one embedding process (efficientnet, onnx).",
                                 factory=_default_workers, shown="min(2, CPUs)", check=_at_least(1))
    embed_batch: int = setting(16, "Images per model call of the efficientnet and onnx backends.", check=_at_least(1))
    mi2_model_version: str = setting("medimageinsight-1", "The MedImageInsight model version recorded with its "
                                     "embeddings.")
    mi2_deployment: str | None = setting(None, "The MedImageInsight deployment name sent to the endpoint.")
    onnx_model: str | None = setting(None, "The ONNX embedding model file of the onnx backend.")
    segmenter: str = setting("local", "The segmentation backend.", check=_one_of(*SEGMENTERS))
    mip_concurrency: int = setting(2, "MedImageParse slice requests in flight per series.", check=_at_least(1))
    mip_model_version: str = setting("medimageparse-1", "The MedImageParse model version recorded with its masks.")
    mip_deployment: str | None = setting(None, "The MedImageParse deployment name.")
    cxr_model_version: str = setting("cxrreportgen-1", "The CXRReportGen model version recorded with its reports.")
    cxr_deployment: str | None = setting(None, "The CXRReportGen deployment name.")
    seg_onnx_model: str | None = setting(None, "The ONNX segmentation model of the onnx segmenter.")
    seg_onnx_labels: str | None = setting(None, "Its labels JSON; default the model's path with `.json`.")
    # check floors ----------------------------------------------------------------------------------------
    eval_min_p5: float = setting(0.9, "Retrieval P@5 below which the blocking evaluation check fails.")
    seg_min_dice: float = setting(0.8, "Mean Dice below which the segmentation evaluation check fails.")
    seg_reference_dir: str | None = setting(None, "User reference masks `<series>/<structure>.nii.gz` to evaluate "
                                            "segmentations against.")
    max_constant_fraction: float = setting(0.05, "Fraction of constant frames in a batch above which "
                                           "`few_constant_images` warns.")
    # export ----------------------------------------------------------------------------------------------
    export_destination: str = setting("", "Where the export asset sends results: a STOW-RS root (http(s)://...) or "
                                      "dicom://CALLED_AE@host:port; empty: export off.")
    export_calling_ae: str = setting("HCA", "Our AE title when exporting by C-STORE.")
    export_retries: int = setting(3, "Attempts per exported study, with exponential backoff between them.",
                                  check=_at_least(1))
    vacuum_retention_hours: float = setting(168.0, "Delta vacuum keeps files a version needed this recently "
                                            "(>= 168: 7 days).", check=_at_least(168))
    # network sources -------------------------------------------------------------------------------------
    cstore_stable_seconds: float = setting(10.0, "A C-STORE study is complete this long after its last instance "
                                           "(associations ended).", check=_at_least(0))
    cstore_max_associations: int = setting(16, "Concurrent associations `hca listen` serves; more are refused.")
    cstore_max_per_caller: int = setting(4, "Of which one calling AE title may hold (between 1 and "
                                         "`cstore_max_associations`).")
    dicomweb_cursor: str = setting("qido", "How the DICOMweb poller finds new studies: qido (StudyDate) or "
                                   "orthanc-changes.", check=_one_of(*DICOMWEB_CURSORS))
    dicomweb_lookback_days: int = setting(1, "qido cursor: studies dated this many days before the last poll are "
                                          "searched again.", check=_at_least(0))
    dicomweb_retries: int = setting(4, "Retries of a DICOMweb request on 429/5xx/connection errors (backoff "
                                    "doubles each time).", check=_at_least(0))
    dicomweb_backoff_seconds: float = setting(0.5, "The first wait between DICOMweb retries.", check=_at_least(0))
    dicomweb_timeout_seconds: float = setting(60.0, "Per HTTP request (connect, and between bytes of a retrieve).",
                                              check=_above(0))
    # drift -----------------------------------------------------------------------------------------------
    drift_reference_batches: int = setting(3, "The earliest N batches of an embedding code_version are the drift "
                                           "reference.", check=_at_least(1))
    drift_alpha: float = setting(0.01, "Drift needs a permutation p-value below this ...", check=_fraction)
    drift_min_mmd2: float = setting(0.02, "... and an MMD² above the reference's own spread, never below this floor.",
                                    check=_at_least(0))
    drift_permutations: int = setting(200, "Permutations of the MMD test.", check=_at_least(1))
    drift_max_samples: int = setting(1000, "Vectors per side the MMD test samples (cost grows with its square); OOD "
                                     "keeps twice as many.", check=_at_least(2))
    ood_k: int = setting(5, "An instance's OOD score is its distance to the k-th nearest reference vector.",
                         check=_at_least(1))
    ood_quantile: float = setting(0.99, "Of the reference's own leave-one-patient-out distances: the OOD threshold.",
                                  check=_fraction)
    ood_max_fraction: float = setting(0.5, "The blocking check fails a batch with more OOD instances than this.",
                                      check=_fraction)
    # hca sql ---------------------------------------------------------------------------------------------
    sql_timeout_seconds: float = setting(60.0, "One `hca sql` statement, wall clock: its process is killed after "
                                         "this.", check=_above(0))
    sql_memory_mb: int = setting(2048, "Memory of that process beyond the interpreter (>= 1024; DuckDB's own limit "
                                 "is three quarters of it).", check=_at_least(1024))
    sql_max_rows: int = setting(1_000_000, "Rows one `hca sql` result may have (add a LIMIT or aggregate for more).",
                                check=_at_least(1))

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise ValueError("`data_dir` must be a path or URI, got an empty string")
        if not is_uri(self.data_dir):  # resolved once: every zone (and the key) is in one folder wherever code runs
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir.removeprefix("file://")))
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None and (why := check(f.name, getattr(self, f.name))) is not None:
                raise ValueError(why)
        parse_destination(self.export_destination, self.export_calling_ae)  # with our AE title: a malformed one fails here
        if not 1 <= self.cstore_max_per_caller <= self.cstore_max_associations:
            raise ValueError(f"`cstore_max_per_caller` must be between 1 and `cstore_max_associations` "
                             f"({self.cstore_max_associations}), got {self.cstore_max_per_caller}")

    @staticmethod
    def env_name(field: dataclasses.Field[Any]) -> str:
        """The environment variable of a settings field."""
        return field.metadata.get("env") or f"HCA_{field.name.upper()}"

    @staticmethod
    def default(field: dataclasses.Field[Any]) -> Any:
        """A settings field's default (its factory's value for those computed at construction)."""
        return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``HCA_*`` variables (default ``os.environ``); unset or empty variables keep their default
        (the configuration reference lists them all); a malformed value raises ValueError naming its variable."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values = {f.name: _from_environ(f, environ, hints[f.name]) for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if value is not _UNSET})

    @classmethod
    def env_value(cls, name: str, environ: Mapping[str, str] | None = None) -> Any:
        """One field's value from the environment (or its default): for infrastructure read before any settings exist."""
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        value = _from_environ(field, os.environ if environ is None else environ, typing.get_type_hints(cls)[name])
        return cls.default(field) if value is _UNSET else value

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


def _from_environ(field: dataclasses.Field[Any], environ: Mapping[str, str], hint: Any) -> Any:
    """The value ``environ`` sets for ``field``, or ``_UNSET`` when its variable is unset (or empty, for a number)."""
    env = Settings.env_name(field)
    return _UNSET if (text := environ.get(env)) is None else _parse(env, text, hint)


def _parse(env: str, text: str, hint: Any) -> Any:
    """A variable's text as its field's type: str, optional str (empty: None), int, float, bool (0/false/no/off:
    False) or a comma-separated tuple of str (empty: none); an empty number or bool keeps the default (``_UNSET``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if not text.strip():
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint in (bool, int, float) and not text.strip():
        return _UNSET
    try:
        if hint is bool:
            return text.strip().lower() not in _FALSE
        if typing.get_origin(hint) is tuple:
            return tuple(item.strip() for item in text.split(",") if item.strip())
        return hint(text) if hint in (int, float) else text
    except ValueError:
        raise ValueError(f"{env} must be a{'n integer' if hint is int else ' number'}, got {text!r}") from None
