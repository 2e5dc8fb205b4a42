"""What goes to the Hub names models and sources the way a reader elsewhere can use them, and holds no secret.

The local ``prefkit.json`` keeps full paths (they are useful on the machine that made the set); the copy `push`
uploads, and the card it renders, name a local model or source by its folder / file name (a Hub one by id and
revision), and commands lose their secrets and machine paths.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

from prefkit.secrets import public_path, redact


def _looks_like_path(arg: str) -> bool:
    return arg.startswith(("/", "./", "../", "~")) or (Path(arg).exists() and ("/" in arg or "\\" in arg))


def public_command(command: str | None) -> str | None:
    """A recorded command line with secrets masked and local paths reduced to what a reader can use."""
    if not command:
        return command
    try:
        args = shlex.split(command)
    except ValueError:
        return redact(command)
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name.startswith("--") and _looks_like_path(value):
            out.append(f"{name}={_unpublished(value)}")
        elif _looks_like_path(arg):
            out.append(_unpublished(arg))
        else:
            out.append(arg)
    return redact(shlex.join(out))


def _unpublished(path: str) -> str:
    """A local path in a published command: it is not rewritten into another path (the command would then name a
    folder that was never used); it says it was not published, with the name a reader can recognise."""
    return f"<local path not published: {public_path(path)}>"


def public_model(section: dict) -> dict:
    """A ``reflogps``-like section naming its model by Hub id (+ revision) or by the folder's name."""
    out = dict(section)
    local = out.get("model_source") == "local"
    out.pop("model_path", None)
    if local and out.get("model"):
        out["model"] = public_path(str(out["model"]))
    for key in ("chat_template",):
        value = out.get(key)
        if isinstance(value, str) and value.startswith("file:"):
            out[key] = "file:" + Path(value.removeprefix("file:")).name
    adapter = out.get("adapter")
    if isinstance(adapter, dict):
        adapter = {k: v for k, v in adapter.items() if k != "path"}
        if adapter.get("source") == "local" and adapter.get("adapter"):
            adapter["adapter"] = public_path(str(adapter["adapter"]))
        out["adapter"] = adapter
    out["command"] = public_command(out.get("command"))
    return out


def public_manifest(manifest: dict) -> dict[str, Any]:
    """The manifest as it is published (see the module docstring); the local file is not changed."""
    out = copy.deepcopy(manifest)
    out["command"] = public_command(out.get("command"))
    for src in out.get("sources", []):
        if src.get("kind") == "local":
            for key in ("id", "source", "path"):
                if isinstance(src.get(key), str):
                    src[key] = public_path(src[key])
    recipe = out.get("recipe") or {}
    recipe["sources"] = [_public_recipe_source(s) for s in recipe.get("sources", [])]
    for section in ("reflogps", "rm_scores"):
        if isinstance(out.get(section), dict):
            out[section] = public_model(out[section])
    tokenizer = out.get("tokenizer")
    if isinstance(tokenizer, dict):
        if tokenizer.get("name_or_path") and _looks_like_path(str(tokenizer["name_or_path"])):
            tokenizer["name_or_path"] = public_path(str(tokenizer["name_or_path"]))
        origin = tokenizer.get("chat_template")
        if isinstance(origin, str) and origin.startswith("file:"):
            tokenizer["chat_template"] = "file:" + Path(origin.removeprefix("file:")).name
    return out


def _public_recipe_source(entry: Any) -> Any:
    if isinstance(entry, dict):
        return {
            **entry,
            "source": public_path(str(entry["source"]))
            if "files" in entry or _looks_like_path(str(entry["source"]))  # files: a local source's digests
            else entry["source"],
        }
    text = str(entry)
    head, sep, tail = text.rpartition(":")
    if sep and tail.replace(".", "", 1).isdigit() and _looks_like_path(head):
        return f"{public_path(head)}:{tail}"
    return public_path(text) if _looks_like_path(text) else text
