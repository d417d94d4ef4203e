"""One router per resource: search, reindex, jobs, collections, health."""
