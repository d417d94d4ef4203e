"""Vector searches of a collection: FAISS's OpenMP threads come from the settings and are set in the thread that
searches (OpenMP keeps them per thread)."""

from __future__ import annotations

import faiss
import numpy as np

from arcsearch.index.threads import SearchThreads
from arcsearch.service.app import create_app
from tests.index.test_threads import in_fresh_thread
from tests.service.helpers import ServiceData, local_client, service_settings, wait_ready


def test_faiss_threads_come_from_the_settings_and_are_set_in_the_searching_thread(service_data: ServiceData) -> None:
    app = create_app(service_settings(service_data, faiss_threads=3, faiss_parallel_min_batch=2))
    with local_client(app) as client:
        wait_ready(client)
        images = app.state.registry.get("images")
        assert images.search_threads == SearchThreads(threads=3, parallel_min_batch=2)
        vectors = np.random.default_rng(0).standard_normal((2, images.embedder.dim)).astype(np.float32)

        def threads_after_search(rows: int) -> int:
            faiss.omp_set_num_threads(7)  # FAISS's default would be a thread per core
            assert len(images.query_vectors(vectors[:rows], 3).hits[0]) == 3
            return faiss.omp_get_max_threads()

        assert in_fresh_thread(lambda: threads_after_search(1)) == 1
        assert in_fresh_thread(lambda: threads_after_search(2)) == 3
