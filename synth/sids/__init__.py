"""Semantic IDs: item vectors → residual K-means codes → collision-free SIDs (see docs/sids.md).

Public entry points: `synth.sids.build.SidConfig`, `synth.sids.build.build_sids`; reading a built
version is `storage.sid_catalog.SidCatalog.load`."""
