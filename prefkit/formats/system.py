"""System prompts: a source's separate system column, and the ``--system`` option (keep | drop | override TEXT |
default TEXT) applied to every normalised prompt."""

from __future__ import annotations

import re

import polars as pl

from prefkit.errors import OptionError, option
from prefkit.formats.base import message as make


def message(role: str, content: pl.Expr) -> pl.Expr:
    return make(role, content)


SYSTEM_MODES = ("keep", "drop", "override", "default")


def parse_system(value: str | None, text: str | None = None) -> tuple[str, str | None]:
    """``keep`` | ``drop`` | ``override TEXT`` | ``default TEXT`` (also ``override:TEXT`` / ``override=TEXT``)
    → ``(mode, text)``; :class:`OptionError` for an unknown mode or a missing/extra text."""
    if value is None:
        return "keep", None
    found = re.match(r"\s*([A-Za-z]+)\s*(?:[:=\s]\s*(.*))?\Z", value, flags=re.S)
    mode, rest = (found.group(1), found.group(2) or "") if found else (value.strip(), "")
    mode = mode.strip().lower()
    if mode not in SYSTEM_MODES:
        raise OptionError(
            f"unknown {option('system')} mode {mode!r}", "use keep, drop, override TEXT or default TEXT"
        )
    body = text if text is not None else (rest.strip() or None)
    if mode in ("override", "default") and not body:
        raise OptionError(
            f"{option('system')} {mode} needs the system prompt text",
            f'e.g. --system {mode} "You are a helpful assistant."',
        )
    if mode in ("keep", "drop") and body:
        raise OptionError(f"--system {mode} takes no text", "use --system override TEXT to set a prompt")
    return mode, body


def apply_system(df: pl.DataFrame, mode: str, text: str | None) -> pl.DataFrame:
    """Drop / override / default the leading system message of every prompt (``keep`` leaves them)."""
    if mode == "keep":
        return df
    first_is_system = (pl.col("prompt").list.first().struct.field("role") == "system").fill_null(False)
    without = pl.when(first_is_system).then(pl.col("prompt").list.slice(1)).otherwise(pl.col("prompt"))
    if mode == "drop":
        new = without
    else:
        msg = pl.concat_list([message("system", pl.lit(text, dtype=pl.String))])
        base = without if mode == "override" else pl.col("prompt")
        prepend = pl.lit(True) if mode == "override" else ~first_is_system
        new = pl.when(prepend).then(pl.concat_list([msg, base])).otherwise(base)
    return df.with_columns(pl.when(pl.col("prompt").is_not_null()).then(new).otherwise(None).alias("prompt"))


def with_system_column(system: pl.Series) -> pl.Expr:
    """Prepend a separate system column to message prompts that do not already start with a system turn."""
    sys = pl.lit(system)
    has = sys.is_not_null() & (sys.str.strip_chars() != "")
    starts_with_system = pl.col("prompt").list.first().struct.field("role") == "system"
    sys_msg = pl.concat_list([message("system", sys)])
    return (
        pl.when(has & ~starts_with_system.fill_null(False))
        .then(pl.concat_list([sys_msg, pl.col("prompt")]))
        .otherwise(pl.col("prompt"))
        .alias("prompt")
    )
