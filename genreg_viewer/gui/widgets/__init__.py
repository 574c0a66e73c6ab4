"""Reusable widgets: image views, the mask painter, parameter forms and themed plots."""
