"""Connections to outside tools (installed as ``curate.integrations``)."""
