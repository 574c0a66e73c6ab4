"""The GUI panels' settings as a session stores them (its ``gui`` object), checked without Qt.

A session saved by the app keeps the window's settings so that opening it restores the window: the selected tab,
the Method panel's method, edited parameters and iterations, and the Comparison panel's view. They are checked
here, in the Qt-free application layer, when a session is opened (:func:`check_gui_settings`); the panels in
:mod:`genreg_viewer.gui.panels` write and apply them."""

from __future__ import annotations

from typing import Any

from .bundles import SessionError
from .meta_checker import MAX_STORED_INT, MetaChecker

_check = MetaChecker()


def check_method_settings(value: Any) -> dict:
    """The Method panel's settings: method name, edited parameter values (parsed by the method's declarations
    when the method is known), iterations; other scalar entries (device, weight set) pass through."""
    raw = _check.mapping(value, "gui.method", default={})
    checked = _check.other_scalars(raw, ("method", "iterations", "params", "edited", "device", "weights"))
    name = _check.text(raw.get("method"), "gui.method.method", optional=True)
    checked["method"] = name
    for key in ("device", "weights"):
        if key in raw:
            checked[key] = _check.text(raw[key], f"gui.method.{key}", optional=True)
    if "iterations" in raw:
        checked["iterations"] = _check.integer(raw["iterations"], "gui.method.iterations", 0, MAX_STORED_INT)
    edited = raw.get("edited", [])
    if not isinstance(edited, list) or not all(isinstance(e, str) for e in edited):
        _check.fail("gui.method.edited", "a list of parameter names", edited)
    params = _check.scalars(raw.get("params", {}), "gui.method.params")
    checked_params = {}
    if name:
        from ..recon import ParameterError, get_method

        try:
            method = get_method(name)
        except (KeyError, ValueError):
            method = None
        for p in method.parameters if method is not None else ():
            if p.name in params and p.name in edited:
                try:
                    parsed = p.parse(params[p.name])
                except ParameterError as exc:
                    raise SessionError(f"gui.method.params: {exc}") from None
                if p.kind is int and abs(parsed) > MAX_STORED_INT:
                    raise SessionError(f"gui.method.params: {p.name} = {parsed} is out of range")
                checked_params[p.name] = parsed
    checked["edited"] = sorted(checked_params)
    checked["params"] = checked_params
    return checked


def check_comparison_settings(value: Any) -> dict:
    """The Comparison panel's settings: view mode, display window, difference range, inset, columns and the
    zoom region; other scalar entries pass through."""
    settings = _check.mapping(value, "gui.comparison", default={})
    checked = _check.other_scalars(settings, ("mode", "window", "difference_range", "inset", "columns", "region"))
    if "mode" in settings:
        checked["mode"] = _check.text(settings["mode"], "gui.comparison.mode")
    if "window" in settings:
        window = settings["window"]
        if not isinstance(window, list) or len(window) != 2:
            _check.fail("gui.comparison.window", "a list [low, high]", window)
        checked["window"] = [_check.number(v, "gui.comparison.window", -1e6, 1e6) for v in window]
    if "difference_range" in settings:
        checked["difference_range"] = _check.number(settings["difference_range"], "gui.comparison.difference_range",
                                                     0.0, 1e6)
    if "inset" in settings:
        checked["inset"] = _check.boolean(settings["inset"], "gui.comparison.inset")
    if "columns" in settings:
        checked["columns"] = _check.integer(settings["columns"], "gui.comparison.columns", 0, 1000)
    if "region" in settings:
        region = settings["region"]
        if not isinstance(region, list) or len(region) != 4:
            _check.fail("gui.comparison.region", "a list [row, col, height, width]", region)
        checked["region"] = [_check.integer(v, "gui.comparison.region", -MAX_STORED_INT, MAX_STORED_INT)
                             for v in region]
    return checked


def check_gui_settings(value: Any) -> dict:
    """A session's ``gui`` object: the selected tab and the Method and Comparison panels' settings."""
    gui = _check.mapping(value, "gui", default={})
    checked = _check.other_scalars(gui, ("method", "comparison", "tab"))
    if "tab" in gui:
        checked["tab"] = _check.integer(gui["tab"], "gui.tab", 0, 1000)
    checked["method"] = check_method_settings(gui.get("method", {}))
    checked["comparison"] = check_comparison_settings(gui.get("comparison", {}))
    return checked
