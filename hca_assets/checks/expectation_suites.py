"""Great Expectations suites of the PHI-free lake tables, as data, and their validation (no Dagster here).

Every suite starts from the table's :class:`~hca_assets.lake.registry.TableSpec` — column names and order,
a logical type per column, non-null columns, unique keys — and adds the table's value sets and ranges
(:data:`EXTRA`). Some facts are not columns: :data:`DERIVED` adds them to the validated frame (vector length
and norm, a CT window's HU bounds, the length of a shape or affine). ``$PARAMETER`` values (the embedding
model's dimension) are given at validation time. Results carry counts and observed aggregates only, never
row values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hca_assets.dicom.burned_in import BurnedInStatus
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.pixels import WINDOWS
from hca_assets.evaluation.retrieval import KS
from hca_assets.evaluation.zero_shot import METRICS as ZERO_SHOT_METRICS
from hca_assets.evaluation.zero_shot import TARGET as ZERO_SHOT
from hca_assets.lake.registry import TableSpec, spec
from hca_assets.segmentation import BACKENDS
from hca_assets.stages.deid import STAGE as DEID_STAGE
from hca_assets.stages.images import RENDER_STAGE
from hca_assets.stages.ingest import STAGE as INGEST_STAGE

__all__ = ["DERIVED", "EXTRA", "MODALITIES", "Expect", "ExpectationResult", "SuiteResult", "suite", "validate"]

# DICOM PS3.3 C.7.3.1.1.1 Modality defined terms, current and retired (real archives still hold retired ones)
MODALITIES = (
    "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DMS", "DG", "DOC", "DX", "ECG", "EEG",
    "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG",
    "MR", "M3D", "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT", "PA", "PLAN", "POS",
    "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN", "RTRAD", "RTRECORD",
    "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF", "STAIN", "TEXTUREMAP", "TG", "US", "VA", "XA",
    "XAPROTOCOL", "XC",
    "AS", "CD", "CF", "CP", "CS", "DD", "DF", "DM", "DS", "EC", "FA", "FS", "LP", "MA", "MS", "OPR", "ST", "VF",
)
HU_MIN, HU_MAX = -1024, 3071  # the range a 12-bit CT stores: a display window outside it shows nothing real
UID = r"^[0-9]+(?:\.[0-9]+)*$"  # PS3.5 9.1: digits and dots (length checked separately: ≤ 64)
SHA256 = r"^[0-9a-f]{64}$"
UNIT = {"min_value": 0.0, "max_value": 1.0}
RETRIEVAL_METRICS = (*(f"P@{k}" for k in KS), "mAP", "top1_accuracy", "top5_majority_accuracy")
SEGMENTATION_METRICS = ("dice", "dice_min", "iou", "hd95_mm")
MODEL_DIM = {"$PARAMETER": "model_dim"}


@dataclass(frozen=True)
class Expect:
    """One expectation as data: a GX expectation class name (``great_expectations.expectations``) and its
    arguments."""

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short PHI-free name for people: the type and the column(s) it is about."""
        cols = self.kwargs.get("column") or ", ".join(self.kwargs.get("column_list", ()))
        cond = " where {} {} {!r}".format(*self.kwargs["row_condition"]) if "row_condition" in self.kwargs else ""
        return f"{self.type}({cols}){cond}"


def _when(where: str, op: str, value: object, **kwargs: Any) -> dict[str, Any]:
    """Arguments of an expectation that applies to the rows where ``where op value`` (op: ``==`` or ``!=``)."""
    return {**kwargs, "row_condition": (where, op, value)}


def _gx_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a declared row condition as a GX condition object."""
    if "row_condition" not in kwargs:
        return dict(kwargs)
    from great_expectations.expectations.row_conditions import Column

    column, op, value = kwargs["row_condition"]
    condition = Column(column) == value if op == "==" else Column(column) != value
    return {**kwargs, "row_condition": condition}


def _list_length(column: str) -> Callable[[pa.Table], pa.Array]:
    return lambda t: pc.list_value_length(t.column(column))


def _vector_norm(t: pa.Table) -> pa.Array:
    flat = t.column("vector").combine_chunks()
    if not len(flat):
        return pa.array([], pa.float64())
    squares = pc.multiply(flat.flatten(), flat.flatten()).to_numpy(zero_copy_only=False).astype(np.float64)
    offsets = flat.offsets.to_numpy()
    sums = np.add.reduceat(squares, offsets[:-1]) if len(squares) else np.zeros(len(flat))
    sums[offsets[:-1] == offsets[1:]] = 0.0  # reduceat repeats a value for empty lists
    return pa.array(np.sqrt(sums))


def _window_bound(which: str) -> Callable[[pa.Table], pa.Array]:
    bounds = {name: getattr(w, which) for name, w in WINDOWS.items()}
    return lambda t: pa.array([bounds.get(w) for w in t.column("window").to_pylist()], pa.float64())


DERIVED: dict[str, dict[str, Callable[[pa.Table], pa.Array]]] = {
    "images": {"window_low_hu": _window_bound("low"), "window_high_hu": _window_bound("high")},
    "volumes": {"shape_len": _list_length("shape"), "affine_len": _list_length("affine")},
    "embeddings": {"vector_dim": _list_length("vector"), "vector_norm": _vector_norm},
    "series_embeddings": {"vector_dim": _list_length("vector")},
}

_MODALITY = Expect("ExpectColumnValuesToBeInSet", {"column": "modality", "value_set": MODALITIES})
_BURNED_IN = Expect("ExpectColumnValuesToBeInSet", {"column": "burned_in", "value_set": [s.value for s in BurnedInStatus]})


def _uids(*columns: str) -> tuple[Expect, ...]:
    return tuple(e for c in columns for e in (Expect("ExpectColumnValuesToMatchRegex", {"column": c, "regex": UID}),
                                              Expect("ExpectColumnValueLengthsToBeBetween", {"column": c, "max_value": 64})))


def _at_least(minimum: float, *columns: str) -> tuple[Expect, ...]:
    return tuple(Expect("ExpectColumnValuesToBeBetween", {"column": c, "min_value": minimum}) for c in columns)


EXTRA: dict[str, tuple[Expect, ...]] = {
    "quarantine": (
        Expect("ExpectColumnValuesToBeInSet", {"column": "stage", "value_set": [INGEST_STAGE, DEID_STAGE, RENDER_STAGE]}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "reason", "value_set": [r.value for r in QuarantineReason]}),
        Expect("ExpectColumnValuesToMatchRegex", {"column": "sha256", "regex": SHA256}),
    ),
    "deid_instances": (
        _MODALITY, _BURNED_IN, *_uids("sop_instance_uid", "series_instance_uid", "study_instance_uid", "sop_class_uid",
                                      "transfer_syntax"),
        Expect("ExpectColumnValuesToMatchRegex", {"column": "sha256", "regex": SHA256}),
        Expect("ExpectColumnValuesToBeUnique", {"column": "path"}),
    ),
    "deid_audit": (
        _BURNED_IN, *_uids("sop_instance_uid"),
        *_at_least(0, "removed", "emptied", "dummied", "uids_replaced", "cleaned", "kept", "private_removed"),
    ),
    "images": (
        _MODALITY, *_uids("sop_instance_uid", "series_instance_uid"),
        *_at_least(0, "frame"), *_at_least(1, "rows", "columns"),
        Expect("ExpectColumnValuesToBeBetween", {"column": "spacing_row_mm", "min_value": 0, "strict_min": True}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "spacing_col_mm", "min_value": 0, "strict_min": True}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "window", "value_set": sorted(WINDOWS)}),
        Expect("ExpectColumnValuesToNotBeNull", _when("modality", "==", "CT", column="window")),
        Expect("ExpectColumnValuesToBeBetween", {"column": "window_low_hu", "min_value": HU_MIN, "max_value": HU_MAX}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "window_high_hu", "min_value": HU_MIN, "max_value": HU_MAX}),
    ),
    "volumes": (
        _MODALITY, *_uids("series_instance_uid"), *_at_least(1, "slices"),
        Expect("ExpectColumnValuesToBeBetween", {"column": "shape_len", "min_value": 3, "max_value": 3}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "affine_len", "min_value": 16, "max_value": 16}),
    ),
    "embeddings": (
        _MODALITY, *_uids("sop_instance_uid", "series_instance_uid"), *_at_least(0, "frame"),
        Expect("ExpectColumnValuesToBeBetween", {"column": "vector_dim", "min_value": MODEL_DIM, "max_value": MODEL_DIM}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "vector_norm", "min_value": 0.999, "max_value": 1.001}),
    ),
    "series_embeddings": (
        _MODALITY, *_uids("series_instance_uid"), *_at_least(1, "slices"),
        Expect("ExpectColumnValuesToBeInSet", {"column": "aggregation", "value_set": ["mean", "max", "median", "std"]}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "vector_dim", "min_value": MODEL_DIM, "max_value": MODEL_DIM}),
    ),
    "labels": (*_uids("sop_instance_uid", "series_instance_uid"),),
    "drift": (
        Expect("ExpectColumnValuesToBeInSet", {"column": "status", "value_set": ["compared", "ood_only", "no_reference", "empty"]}),
        Expect("ExpectColumnValuesToNotBeNull", _when("status", "==", "compared", column="mmd2")),
        Expect("ExpectColumnValuesToBeBetween", {"column": "p_value", **UNIT}),
        Expect("ExpectColumnValuesToBeBetween", {"column": "ood_fraction", **UNIT}),
        *_at_least(0, "rows", "reference_rows", "threshold", "bandwidth", "ood_threshold"),
    ),
    "ood_scores": (
        _MODALITY, *_uids("sop_instance_uid"), *_at_least(0, "frame", "kth_distance", "score"),
        Expect("ExpectColumnValuesToBeBetween", {"column": "percentile", **UNIT}),
    ),
    "evaluations": (
        Expect("ExpectColumnValuesToBeInSet", {"column": "metric", "value_set": [*RETRIEVAL_METRICS, *SEGMENTATION_METRICS,
                                                                          "reviewed_accuracy", *ZERO_SHOT_METRICS]}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "level", "value_set": ["image", "series", "study"]}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "target", "value_set": ["class_label", "lesion", "class_and_lesion", "segmentation",
                                                                          "class_label_heldout", "lesion_heldout",
                                                                          "reviewed", ZERO_SHOT]}),
        Expect("ExpectColumnValuesToBeBetween", _when("metric", "!=", "hd95_mm", column="value", **UNIT)),
        Expect("ExpectColumnValuesToBeBetween", _when("metric", "==", "hd95_mm", column="value", min_value=0.0)),
        *_at_least(0, "queries"),
    ),
    "feedback": (
        Expect("ExpectColumnValuesToBeInSet", {"column": "kind", "value_set": ["search_hit", "mask"]}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "verdict", "value_set": ["correct", "wrong", "corrected"]}),
        Expect("ExpectColumnValuesToNotBeNull", _when("verdict", "==", "corrected", column="corrected_label")),
    ),
    "reports": (
        *_uids("study_instance_uid", "frontal_sop_instance_uid"),
        Expect("ExpectColumnValuesToBeInSet", {"column": "status", "value_set": ["reported", "failed"]}),
        Expect("ExpectColumnValuesToNotBeNull", _when("status", "==", "reported", column="sentence")),
        Expect("ExpectColumnValuesToNotBeNull", _when("status", "==", "failed", column="reason")),
        *_at_least(0, "finding_index"),
    ),
    "segmentations": (
        _MODALITY, *_uids("series_instance_uid"),
        Expect("ExpectColumnValuesToBeInSet", {"column": "status", "value_set": ["segmented", "unsupported", "failed"]}),
        Expect("ExpectColumnValuesToBeInSet", {"column": "backend", "value_set": list(BACKENDS)}),
        *_at_least(0, "voxels", "area_mm2", "volume_ml"),
        Expect("ExpectColumnValuesToBeBetween", {"column": "confidence", **UNIT}),
        Expect("ExpectColumnValuesToNotBeNull", _when("status", "==", "segmented", column="voxels")),
    ),
}


def _logical_type(t: pa.DataType) -> str:
    """The Python type name GX observes for a column of ``t`` read as an Arrow-backed pandas column."""
    for test, name in ((pa.types.is_boolean, "bool"), (pa.types.is_integer, "int"), (pa.types.is_floating, "float"),
                       (pa.types.is_string, "str"), (pa.types.is_large_string, "str"), (pa.types.is_timestamp, "datetime"),
                       (pa.types.is_list, "list"), (pa.types.is_large_list, "list"), (pa.types.is_map, "list")):
        if test(t):
            return name
    raise ValueError(f"no logical type for Arrow type {t}")


def suite(table: TableSpec | str) -> list[Expect]:
    """The expectations of a lake table: schema, non-null columns, unique keys, then its value sets and ranges."""
    t = spec(table) if isinstance(table, str) else table
    out = [Expect("ExpectTableColumnsToMatchOrderedList", {"column_list": [*t.schema.names, *DERIVED.get(t.name, {})]})]
    out += [Expect("ExpectColumnValuesToBeOfType", {"column": f.name, "type_": _logical_type(f.type)}) for f in t.schema]
    out += [Expect("ExpectColumnValuesToNotBeNull", {"column": f.name}) for f in t.schema if not f.nullable]
    out.append(Expect("ExpectCompoundColumnsToBeUnique", {"column_list": list(t.keys)}) if len(t.keys) > 1
               else Expect("ExpectColumnValuesToBeUnique", {"column": t.keys[0]}))
    return out + list(EXTRA.get(t.name, ()))


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str  # Expect.label
    success: bool
    observed: str  # the observed aggregate, or how many rows broke it: PHI-free


@dataclass(frozen=True)
class SuiteResult:
    table: str
    rows: int
    results: tuple[ExpectationResult, ...]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]


def _observed(result: Mapping[str, Any], exception: Mapping[str, Any] | None) -> str:
    if exception and exception.get("raised_exception"):
        return f"error: {str(exception.get('exception_message', '')).splitlines()[0][:120]}"
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} of {result.get('element_count', '?')} rows unexpected"
    value = result.get("observed_value")
    return str(value)[:200] if isinstance(value, (str, int, float, bool, list)) else "-"


def validate(table: TableSpec | str, data: pa.Table, params: Mapping[str, Any] | None = None,
             expectations: Sequence[Expect] | None = None) -> SuiteResult:
    """Validate ``data`` (rows of the table) with its suite (or ``expectations``) in an ephemeral GX context."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    t = spec(table) if isinstance(table, str) else table
    chosen = list(expectations) if expectations is not None else suite(t)
    frame = data  # as written: a missing, extra or misplaced column fails the schema expectation
    derived = DERIVED.get(t.name, {}) if set(data.column_names) >= set(t.schema.names) else {}
    for name, derive in derived.items():
        frame = frame.append_column(name, derive(frame))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("lake").add_dataframe_asset(t.name).add_batch_definition_whole_dataframe("batch")
    gx_suite = context.suites.add(gx.ExpectationSuite(name=t.name))
    for e in chosen:
        gx_suite.add_expectation(getattr(gx.expectations, e.type)(**_gx_kwargs(e.kwargs)))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=t.name, data=batch, suite=gx_suite))
    run = definition.run(batch_parameters={"dataframe": frame.to_pandas(types_mapper=pd.ArrowDtype)},
                         expectation_parameters=dict(params or {}))
    by_id = {str(r.expectation_config.id): r for r in run.results}
    results = []
    for e, configured in zip(chosen, gx_suite.expectations, strict=True):
        r = by_id[str(configured.id)]
        results.append(ExpectationResult(e.label, bool(r.success), _observed(r.result or {}, r.exception_info)))
    return SuiteResult(t.name, data.num_rows, tuple(results))
