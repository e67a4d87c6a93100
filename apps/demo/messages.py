"""User-facing messages: a bad value is explained in the page, next to its input.

A callback returns ``problem(text, n)`` instead of raising: the message box shows the text and
its ``n`` other outputs keep what they showed (``gr.skip()``), so one typo does not blank the
results. ``ok()`` hides the box again.
"""

from __future__ import annotations

import gradio as gr

CSS = ".vsae-message { border-left: 4px solid #d33; padding: 4px 10px; background: #fff3f3; }"


def message_box(elem_id: str) -> gr.Markdown:
    """A hidden Markdown that shows a problem with the inputs above it.

    Parameters
    ----------
    elem_id
        Its HTML id (the browser tests find it by this id).

    Returns
    -------
    gr.Markdown
    """
    return gr.Markdown(visible=False, elem_id=elem_id, elem_classes=["vsae-message"])


def problem(text: str, n_outputs: int) -> tuple:
    """Outputs for a refused input: the message shown, the other outputs left as they are.

    Parameters
    ----------
    text
        What was wrong and what is expected (one line, for the user).
    n_outputs
        How many outputs follow the message box.

    Returns
    -------
    tuple
        ``(message update, gr.skip() * n_outputs)``.
    """
    return (gr.update(value=f"**Problem:** {text}", visible=True), *[gr.skip()] * n_outputs)


def ok() -> dict:
    """The message box hidden (the inputs were fine)."""
    return gr.update(value="", visible=False)
