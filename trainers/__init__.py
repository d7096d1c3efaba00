"""Thin training launches over TRL / transformers: configuration in (YAML under configs/train/), one TRL call,
artifacts and lineage out. One module per trainer; data export, tokenizer extension and evaluation beside them."""
