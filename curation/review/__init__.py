"""Human review of curated samples in Argilla: a local stack (`stack`), push (`push`), pull (`pull`),
agreement report (`report`) and human overrides of filter verdicts (`overrides`)."""
