"""Zero-shot classification of the indexed images by text prompts, where the embedding backend embeds text
(MedImageInsight); skipped, with the reason, for backends that do not (the local one)."""

from collections.abc import Iterator

import dagster as dg
import numpy as np

from hca_assets.assets import _metadata as md
from hca_assets.evaluation.zero_shot import TARGET, class_prompt, zero_shot_rows
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.base import vectors_of
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource


@dg.asset(deps=["embeddings", "labels"], group_name="search", kinds={"python", "deltalake"}, output_required=False,
          description="Zero-shot class of every labelled image: nearest class prompt ('<modality> <anatomy>') in the "
                      "backend's text space, softmax at its scaling factor; accuracy per class into evaluations "
                      "(target zero_shot). Skipped for backends without text embeddings.")
def zero_shot_eval(context: dg.AssetExecutionContext, storage: SettingsResource,
                   embedding_endpoint: EmbeddingEndpoint) -> Iterator[dg.MaterializeResult]:
    settings = storage.settings()
    embedder = get_embedder(settings, url=embedding_endpoint.url, key=embedding_endpoint.key)
    if not embedder.supports_text or not hasattr(embedder, "scaling_factor"):
        context.log.info(f"zero-shot skipped: the {embedder.name!r} backend embeds no text (MedImageInsight does: "
                         "HCA_EMBEDDER=azure)")
        return
    version = embedder_code_version(settings)
    labels = {r["sop_instance_uid"]: r["class_label"] for r in tables.LABELS.read(settings).to_pylist()}
    emb = tables.EMBEDDINGS.read(settings, where={"code_version": version})
    keep = np.array([sop in labels for sop in emb.column("sop_instance_uid").to_pylist()], dtype=bool)
    emb = emb.filter(keep) if emb.num_rows else emb
    truth = [labels[s] for s in emb.column("sop_instance_uid").to_pylist()]
    classes = sorted(set(truth))
    prompts = [class_prompt(c) for c in classes]
    texts = embedder.embed_text(prompts) if classes else np.zeros((0, embedder.dim), np.float32)
    scale = embedder.scaling_factor(prompts[0]) if classes else 0.0
    table = zero_shot_rows(vectors_of(emb) if emb.num_rows else np.zeros((0, embedder.dim)), truth, texts, classes,
                           scale, version, context.run.run_id)
    written = tables.EVALUATIONS.write(settings, table, match={"run_id": context.run.run_id, "target": TARGET})
    lines = ["| class | prompt | accuracy |", "|---|---|---:|"] + [
        f"| {r['label']} | {class_prompt(r['label']) if r['label'] != 'overall' else ''} | {r['value']:.3f} |"
        for r in table.to_pylist() if r["metric"] == "accuracy"]
    yield dg.MaterializeResult(metadata={**md.written(written), "code_version": version, "scaling_factor": scale,
                                         "accuracy": dg.MetadataValue.md("\n".join(lines))})
