"""What a run's end is called, in plain words: one short line for the progress text, the live view's header and the
status bar, and the details (convergence test, objective) for tooltips.

A run that did the iterations it was asked for has *finished*: "finished: 40 iterations, 1.9 s", whether or not its
convergence test fired (the iteration budget is the design, not a failure). Only real failures are said as such:
"cancelled after 12 of 40 iterations" and, from the worker's error, "failed: ... diverged: NaN ...".
"""

from __future__ import annotations

import math

from ..application import RunRecord

#: iterations over which the joint methods' convergence test averages the objective's relative decrease
CONVERGENCE_WINDOW = 5


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


def _iterations(count: int) -> str:
    return "1 iteration" if count == 1 else f"{count} iterations"


def run_summary(record: RunRecord, budget: int | None = None) -> str:
    """``finished: 40 iterations, 1.9 s``; ``finished: converged after 23 iterations, 1.1 s`` when a convergence
    test stopped it early; ``cancelled after 12 of 40 iterations, 0.6 s`` (``budget``: the iterations asked for)."""
    seconds = format_seconds(record.seconds)
    if record.cancelled:
        done = f"{record.iterations} of {budget}" if budget else f"{record.iterations}"
        return f"cancelled after {done} iteration{'' if done == '1' else 's'}, {seconds}"
    early = record.info.get("converged") is True and (budget is None or record.iterations < budget)
    if early:
        return f"finished: converged after {_iterations(record.iterations)}, {seconds}"
    return f"finished: {_iterations(record.iterations)}, {seconds}"


def objective_decrease(record: RunRecord, window: int = CONVERGENCE_WINDOW) -> float | None:
    """The objective's mean relative decrease per iteration over the last ``window`` iterations of the run's
    history (what the joint methods' convergence test compares with their tolerance), or None when the history is
    too short or has no finite objective."""
    points = [(h["iteration"], h["objective"]) for h in record.history
              if h.get("iteration", 0) >= 1 and isinstance(h.get("objective"), (int, float))
              and math.isfinite(h["objective"])]
    if len(points) < 2:
        return None
    last_iteration, last = points[-1]
    earlier = [p for p in points if p[0] <= last_iteration - window] or points[:1]
    first_iteration, first = earlier[-1]
    steps = last_iteration - first_iteration
    if steps <= 0 or last == 0:
        return None
    return (first - last) / (steps * abs(last))


def run_details(record: RunRecord, budget: int | None = None) -> str:
    """Plain-text details of how the run ended: the method's convergence test's verdict with its tolerance (each
    method says what it measures: the joint methods the objective's relative decrease, TV its primal-dual gap), the
    objective's mean relative decrease, and the final objective (the tooltip of the run's status and tile)."""
    lines = []
    tolerance = record.params.get("tolerance")
    converged = record.info.get("converged")
    decrease = objective_decrease(record)
    rate = f"{decrease:.2g}" if decrease is not None else "–"
    if record.cancelled:
        lines.append("Cancelled: the image is the last iterate before the run stopped.")
    elif converged is True:
        lines.append(f"Converged after {_iterations(record.iterations)}: the method's convergence test fired "
                     f"(tolerance {tolerance:g})." if isinstance(tolerance, (int, float))
                     else f"Converged after {_iterations(record.iterations)}.")
    elif converged is False:
        asked = f"the {budget} iterations asked for" if budget else f"{_iterations(record.iterations)}"
        at = f" at tolerance {tolerance:g}" if isinstance(tolerance, (int, float)) and tolerance > 0 else ""
        lines.append(f"Ran {asked}; the convergence test had not fired yet{at} (that is normal: the iteration count "
                     "is the method's design).")
    else:
        lines.append(f"Ran {_iterations(record.iterations)}.")
    if decrease is not None and converged is not None:
        limit = f" (tolerance {tolerance:g})" if isinstance(tolerance, (int, float)) else ""
        lines.append(f"Mean relative decrease of the objective per iteration over the last {CONVERGENCE_WINDOW} "
                     f"iterations: {rate}{limit}.")
    final = next((h["objective"] for h in reversed(record.history)
                  if isinstance(h.get("objective"), (int, float)) and math.isfinite(h["objective"])), None)
    if final is not None:
        lines.append(f"Final objective: {final:.6g}.")
    return "\n".join(lines)


#: characters of a failure's message shown under the progress bar (the whole message is in its tooltip and dialog)
FAILURE_CHARACTERS = 80


def failure_summary(message: str) -> str:
    """``failed: <the worker's one-line message>`` (a diverged run's message says "diverged: NaN ..."), its
    parameter list left out and the rest cut to :data:`FAILURE_CHARACTERS` so it fits under the progress bar."""
    short = message.split(" with ", 1)[0] if " diverged: " in message else message
    if len(short) > FAILURE_CHARACTERS:
        short = short[:FAILURE_CHARACTERS - 1].rstrip() + "…"
    return f"failed: {short}"
