"""Human review of curated samples in Argilla: a local stack (`stack`), the `argilla` SDK client and its
errors (`client`), push (`push`), pull (`pull`), annotators (`users`), agreement report (`report`), human
overrides of filter verdicts (`overrides`), and the filter class behind each verdict label (`filter_kinds`)."""
