"""The service's domain: collections, batching, re-index jobs; no HTTP (the edge in service/ maps its errors)."""
