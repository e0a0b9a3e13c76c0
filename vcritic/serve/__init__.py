"""``vcritic serve``: the HTTP service, its dynamic batcher, and a client."""
