"""Starting a re-index job: from a path under the data root, or from inline items."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, Response

from arcsearch.index.build import CorpusItem, InlineImage
from arcsearch.index.corpus import CorpusError, TextItem, read_image_folder, read_image_manifest, require_column
from arcsearch.index.tables import TableError, is_table, table_rows
from arcsearch.service.auth import AdminAccess
from arcsearch.service.core.errors import InvalidSourceError, WrongModalityError
from arcsearch.service.core.jobs import ItemLoader
from arcsearch.service.core.paths import root_forms, scrub_paths
from arcsearch.service.core.served import ServedCollection
from arcsearch.service.core.sources import LoadedItems, inside_root, read_texts_tolerant, resolve_source
from arcsearch.service.deps import JobsDep, RegistryDep, SettingsDep
from arcsearch.service.errors import validation_error
from arcsearch.service.routers.search import check_text_length
from arcsearch.service.schemas import ErrorResponse, JobAccepted, ReindexItem, ReindexRequest
from arcsearch.service.settings import Settings
from arcsearch.service.uploads import base64_bytes

router = APIRouter(prefix="/v1", tags=["reindex"], dependencies=[AdminAccess])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422, 503)}


def source_loader(target: ServedCollection, data_root: Path, source: str) -> ItemLoader:
    """Check ``source`` now (400/403): a folder of class sub-folders or an image manifest for images, a text
    table for texts, with its required column where the header names them. The returned loader reads it in
    the job: a bad text row is a recorded failure; a bad image manifest (a missing file, a file outside the
    data root, a duplicate id) fails the job, naming the row, and publishes nothing."""
    path = resolve_source(data_root, source)
    modality = target.info.modality
    if modality == "image" and not (path.is_dir() or (path.is_file() and is_table(path))):
        raise InvalidSourceError(f"image collection {target.name!r} needs a folder of class sub-folders or a "
                                 ".csv/.jsonl/.parquet manifest of image paths")
    if modality == "text" and not (path.is_file() and is_table(path)):
        raise InvalidSourceError(f"text collection {target.name!r} needs a .jsonl, .csv or .parquet file")
    if path.is_file():
        try:
            require_column(path, "text" if modality == "text" else "path")
            if modality == "image":  # a JSONL manifest names no columns: its first row must have a path
                _number, first, _reason = next(table_rows(path), (0, None, ""))
                if first is not None and "path" not in first:
                    raise CorpusError(f"{path} row 1 has no 'path' (an image manifest names one file per row)")
        except (CorpusError, TableError) as exc:
            raise InvalidSourceError(scrub_paths(str(exc), root_forms([data_root]))) from None

    def load() -> Sequence[CorpusItem] | LoadedItems:
        if modality == "text":
            return read_texts_tolerant(path)  # a bad row is a recorded failure, not the end of the job
        if path.is_dir():
            return inside_root(read_image_folder(path), data_root)
        return read_image_manifest(path, confine_to=data_root)
    return load


def inline_items(target: ServedCollection, items: list[ReindexItem], settings: Settings) -> list[CorpusItem]:
    """Turn request items into corpus items; 400 for the wrong modality, 422 for bad base64, too many items or
    a text over ``max_text_chars``, 413 for an image over ``max_upload_bytes``."""
    if len(items) > settings.max_reindex_items:
        raise validation_error(("body", "items"), f"at most {settings.max_reindex_items} items per request",
                               error_type="too_long")
    if len({item.id for item in items}) != len(items):
        raise validation_error(("body", "items"), "item ids must be unique")
    modality = target.info.modality
    corpus: list[CorpusItem] = []
    for i, item in enumerate(items):
        if (item.text is not None) != (modality == "text"):
            wanted = "text" if modality == "text" else "image_base64"
            raise WrongModalityError(f"collection {target.name!r} holds {modality}s: every item needs {wanted!r}")
        if item.text is not None:
            check_text_length(item.text, ("body", "items", i, "text"), settings.max_text_chars)
            corpus.append(TextItem(item_id=item.id, text=item.text, label=item.label, metadata=item.metadata))
            continue
        data = base64_bytes(item.image_base64 or "", loc=("body", "items", i, "image_base64"),
                            max_bytes=settings.max_upload_bytes)
        corpus.append(InlineImage(item_id=item.id, data=data, label=item.label, metadata=item.metadata))
    return corpus


@router.post("/reindex", status_code=202, response_model=JobAccepted, responses=ERRORS,
             summary="Build a new index version in the background; poll GET /v1/jobs/{job_id}")
def reindex(body: ReindexRequest, registry: RegistryDep, jobs: JobsDep, settings: SettingsDep,
            response: Response) -> JobAccepted:
    target = registry.get(body.collection)
    if body.source is not None:
        loader, label = source_loader(target, settings.data_root, body.source), body.source
    else:
        corpus = inline_items(target, body.items or [], settings)
        loader, label = (lambda: corpus), f"inline ({len(corpus)} items)"
    if body.workers is not None and body.workers > settings.reindex_workers:
        raise validation_error(("body", "workers"), f"at most {settings.reindex_workers} workers "
                               "(ARCSEARCH_REINDEX_WORKERS)", error_type="less_than_equal")
    status = jobs.submit(target, loader, source=label, budget=body.index_budget(), workers=body.workers)
    response.headers["Location"] = f"/v1/jobs/{status.job_id}"
    return JobAccepted(job_id=status.job_id, status=status.status)

