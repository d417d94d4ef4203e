"""Service settings, read from ``ARCSEARCH_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arcsearch.index.collections import Backend
from arcsearch.index.preprocess import MAX_IMAGE_PIXELS

MiB = 1024 * 1024
MIN_KEY_CHARS = 16


class Settings(BaseSettings):
    """Everything the service reads from its environment; e.g. ``ARCSEARCH_PORT=8080``."""

    # errors never echo the value: a key must not reach a log or a terminal
    model_config = SettingsConfigDict(env_prefix="ARCSEARCH_", extra="ignore", hide_input_in_errors=True)

    collections_dir: Path = Field(Path("artifacts/collections"),
                                  description="folder of collections (see index.collections)")
    data_root: Path = Field(Path("data"), description="re-index sources must resolve below this folder")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allow_non_loopback: bool = Field(False, description="bind a non-loopback host without API keys "
                                     "(a loud warning; only behind something that authenticates)")
    read_keys: SecretStr = Field(SecretStr(""), description="comma-separated read-only API keys "
                                 f"(each at least {MIN_KEY_CHARS} characters)")
    admin_keys: SecretStr = Field(SecretStr(""), description="comma-separated admin API keys "
                                  f"(each at least {MIN_KEY_CHARS} characters)")
    allowed_hosts: str = Field("", description="with no API key configured, Host names accepted besides "
                               "localhost, 127.x.y.z and [::1] (comma-separated; any other Host gets 421)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    log_format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object per line")

    max_upload_bytes: int = Field(8 * MiB, ge=1, description="largest image upload, bytes (each file of a batch)")
    max_request_bytes: int = Field(64 * MiB, ge=1, description="largest body of a re-index request (inline "
                                   "items); for image search, the most bytes of all files together")
    max_json_bytes: int = Field(1 * MiB, ge=1, description="largest JSON body of every other route; an item "
                                "upsert may add the base64 of one image of max_upload_bytes")
    max_batch_images: int = Field(16, ge=1, le=1000, description="most image files in one search request "
                                  "(the multipart parser takes at most 1000)")
    max_text_chars: int = Field(2000, ge=1, description="longest text query, characters")
    max_batch_texts: int = Field(64, ge=1, description="most texts in one batch query")
    max_k: int = Field(100, ge=1, description="most neighbours one query may ask for")
    max_reindex_items: int = Field(100_000, ge=1, description="most inline items in one re-index request")
    reindex_workers: int = Field(1, ge=1, le=64, description="embedding processes of a re-index job (1: in the "
                                 "server process, with the loaded embedder); a request may ask for up to this many")
    reindex_shard_items: int = Field(4096, ge=1, description="items per resumable shard of a re-index: a job "
                                     "killed midway and submitted again resumes from its last finished shard")
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1, le=MAX_IMAGE_PIXELS, description="most pixels "
                                  "(width x height) of one image, read from its header before decoding; more get 413")
    max_request_pixels: int = Field(200_000_000, ge=1, description="most pixels of all images of one image search "
                                    "together; more get 413")
    max_concurrent_decodes: int = Field(2, ge=1, le=64, description="images decoded at once, over all requests "
                                        "(each may take max_image_pixels x 6 bytes while it is decoded)")
    max_images_in_flight: int = Field(64, ge=1, description="uploaded images held at once, over all requests (read, "
                                      "decoded, queued or embedded); a request that would pass it gets 503 overloaded")

    index_backend: Backend = Field("faiss", description="where collections created without a "
                                                      "'backend' keep their vectors; milvus also lets several "
                                                      "processes serve one collections folder (docs/service.md)")
    milvus_uri: str = Field("", description="the Milvus server (or cluster proxy) of milvus collections, e.g. "
                            "http://127.0.0.1:19530; never taken from a request")
    milvus_token: SecretStr = Field(SecretStr(""), description="Milvus token ('user:password' or an API key), "
                                    "if the server needs one")
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Strong", description="consistency of searches and reads of milvus collections: Strong sees every write "
        "any process made before it but waits for Milvus's next time tick (~200 ms at Milvus's default "
        "proxy.timeTickInterval); Bounded answers at once but may miss writes of the last seconds; Session sees "
        "this process's own writes only; Eventually promises nothing about recent writes")
    milvus_ef: int = Field(64, ge=1, le=32768, description="HNSW ef of searches of milvus collections with an HNSW "
                           "index (raised to k when k is larger); more is slower and finds more true neighbours")
    index_factory: str = Field("Flat", description="FAISS factory for re-indexed collections without one")
    search_params: str = Field("", description="FAISS search parameters, e.g. 'nprobe=16'")
    batch_size: int = Field(32, ge=1, description="embedding batch size of re-index jobs")
    batch_max_size: int = Field(32, ge=1, le=1024,
                                description="micro-batching: most query inputs embedded in one forward pass")
    batch_max_wait_ms: float = Field(2.0, ge=0, le=1000,
                                     description="micro-batching: longest wait for more queries after the first")
    batch_max_queued_inputs: int = Field(256, ge=1, description="micro-batching: most query inputs (texts or "
                                         "images) waiting for a forward pass per collection; more get 503 overloaded")
    torch_threads: int = Field(0, ge=0, le=1024, description="torch CPU threads for a batched forward pass; "
                               "0 = one less than the CPU cores available (at least 1)")
    torch_parallel_min_batch: int = Field(4, ge=0, description="forward passes of fewer inputs run on one torch "
                                          "thread; 0 = leave torch's thread setting alone")
    faiss_threads: int = Field(0, ge=0, le=1024, description="OpenMP threads of a FAISS search of many query "
                               "vectors at once; 0 = one less than the CPU cores available (at least 1)")
    faiss_parallel_min_batch: int = Field(4, ge=0, description="FAISS searches of fewer query vectors run on one "
                                          "OpenMP thread (concurrent requests use the cores); 0 = leave FAISS's "
                                          "setting (a thread per core) alone")
    keep_jobs: int = Field(200, ge=1, description="finished jobs remembered (GET /v1/jobs, GET /v1/jobs/{id})")
    jobs_db: Path | None = Field(None, description="SQLite file of re-index jobs; default "
                                 "<collections_dir>/jobs.sqlite")
    sqlite_busy_timeout_s: float = Field(5.0, gt=0, le=600, description="how long a write to the jobs database "
                                         "or a change log waits for another connection's lock; then the request "
                                         "answers 503 storage_busy with Retry-After")
    job_max_failures: int = Field(100, ge=0, description="a re-index job aborts when more items than this fail")
    job_yield_ms: float = Field(200.0, ge=0, le=10_000, description="before each batch a re-index job waits up to "
                                "this long while queries are being answered (0 = never wait)")
    verify_embedder_hash: bool = Field(True, description="re-hash embedder weights at load")

    @field_validator("read_keys", "admin_keys")
    @classmethod
    def _keys_are_long(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """Every key has at least MIN_KEY_CHARS characters; the error names the variable, never a key."""
        short = sum(len(key) < MIN_KEY_CHARS for key in _comma_list(value.get_secret_value()))
        if short:
            raise ValueError(f"ARCSEARCH_{str(info.field_name).upper()}: {short} key(s) shorter than {MIN_KEY_CHARS} "
                             "characters; use long random keys, e.g. from "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value

    @property
    def jobs_db_path(self) -> Path:
        return self.jobs_db if self.jobs_db is not None else self.collections_dir / "jobs.sqlite"

    @property
    def max_image_request_bytes(self) -> int:
        """The most bytes of all files of one image search: ``max_request_bytes``, but no more than
        ``max_batch_images`` full-size files and never less than one."""
        return max(self.max_upload_bytes, min(self.max_request_bytes, self.max_batch_images * self.max_upload_bytes))

    @property
    def item_upsert_bytes(self) -> int:
        """The largest item upsert body: the base64 of one image of ``max_upload_bytes``, plus a JSON body."""
        return 4 * -(-self.max_upload_bytes // 3) + self.max_json_bytes

    @property
    def allowed_host_set(self) -> frozenset[str]:
        return _comma_list(self.allowed_hosts.lower())

    @property
    def read_key_set(self) -> frozenset[str]:
        return _comma_list(self.read_keys.get_secret_value())

    @property
    def admin_key_set(self) -> frozenset[str]:
        return _comma_list(self.admin_keys.get_secret_value())

    @property
    def auth_enabled(self) -> bool:
        """Whether any API key is configured (then every route but health, docs and the page needs one)."""
        return bool(self.read_key_set or self.admin_key_set)


def _comma_list(value: str) -> frozenset[str]:
    """The non-empty, stripped items of a comma-separated value."""
    return frozenset(key.strip() for key in value.split(",") if key.strip())
