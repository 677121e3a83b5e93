"""Great Expectations suites (:mod:`hca_assets.checks.expectation_suites`) as blocking asset checks: one check per asset over
the lake rows it just wrote (its batch, or its run for the evaluations); per expectation, success and the
observed value appear in the check's metadata in the UI."""

from collections.abc import Callable, Mapping

import dagster as dg

from hca_assets.checks.expectation_suites import SuiteResult, validate
from hca_assets.lake.registry import Writer, lake_tables, spec
from hca_assets.models import get_embedder
from hca_assets.orchestration.code_versions import code_versions
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource

__all__ = ["CHECK_NAME", "EXPECTATION_CHECKS", "check_result"]

CHECK_NAME = "great_expectations"

Slice = Callable[[dg.AssetCheckExecutionContext], Mapping[str, str]]


def _slice(writer: Writer) -> Slice:
    """The rows one materialization of ``writer`` owns, as ``column = value`` filters."""
    def where(context: dg.AssetCheckExecutionContext) -> Mapping[str, str]:
        owned = ({"batch": context.partition_key} if writer.owns == "batch"
                 else {"run_id": context.run.run_id} if writer.owns == "run" else {})  # "all": the whole table
        return {**owned, **dict(writer.where)}
    return where


def _tables_of() -> dict[str, dict[str, Slice]]:
    """Asset -> the PHI-free tables it writes that its suite validates, with the slice one materialization owns."""
    out: dict[str, dict[str, Slice]] = {}
    for table in lake_tables():
        for writer in table.writers:
            if writer.expectations:
                out.setdefault(writer.asset, {})[table.name] = _slice(writer)
    return out


TABLES_OF = _tables_of()  # from the registry's writers


def _markdown(results: list[SuiteResult]) -> str:
    lines = ["| table | expectation | success | observed |", "|---|---|---|---|"]
    lines += [f"| {s.table} | {r.expectation.replace('|', '/')} | {'✅' if r.success else '❌'} | {r.observed} |"
              for s in results for r in s.results]
    return "\n".join(lines)


def check_result(results: list[SuiteResult]) -> dg.AssetCheckResult:
    """One check result from the suites of an asset's tables: passed only if every expectation held."""
    failed = [f"{s.table}: {r.expectation}" for s in results for r in s.failed]
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={
            "expectations": sum(len(s.results) for s in results),
            "failed": len(failed),
            "rows": dg.MetadataValue.json({s.table: s.rows for s in results}),
            "failed_expectations": dg.MetadataValue.json(failed),
            "results": dg.MetadataValue.md(_markdown(results)),
        },
    )


def _gx_check(asset: str, tables: Mapping[str, Slice]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=CHECK_NAME, blocking=True,
                    description=f"Great Expectations suites of {', '.join(tables)}: schema, nulls, unique keys, "
                                "value sets and ranges (hca_assets/checks/expectation_suites.py)")
    def _check(context: dg.AssetCheckExecutionContext, storage: SettingsResource,
               embedding_endpoint: EmbeddingEndpoint) -> dg.AssetCheckResult:
        settings = storage.settings()
        params = {}
        if asset == "embeddings":  # the vectors must have the configured model's dimension
            params["model_dim"] = get_embedder(settings, url=embedding_endpoint.url, key=embedding_endpoint.key).dim
        version = code_versions(settings).get(asset)  # tables keyed by code_version hold other versions' rows too
        # (a run's evaluations, keyed by run, may hold several versions: base and adapted vectors)
        wheres = {name: {**where(context), **({"code_version": version} if version and "code_version" in spec(name).keys
                                               and name != "evaluations" else {})} for name, where in tables.items()}
        results = [validate(name, spec(name).read(settings, where=w), params) for name, w in wheres.items()]
        for s in results:
            context.log.info(f"{s.table}: {len(s.results) - len(s.failed)}/{len(s.results)} expectations met on {s.rows} rows")
        return check_result(results)

    return _check


EXPECTATION_CHECKS: list[dg.AssetChecksDefinition] = [_gx_check(asset, tables) for asset, tables in TABLES_OF.items()]
