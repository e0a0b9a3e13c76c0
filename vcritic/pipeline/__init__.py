"""Files through the model: decoding in workers, scoring and comparing in input order, data parallel."""
