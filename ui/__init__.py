"""The `recot` CLI (ui/cli.py, one module per command group in ui/commands/) and the Streamlit viewer
(ui/viewer/). ui reads everything and owns no logic: commands parse options and call the packages."""
