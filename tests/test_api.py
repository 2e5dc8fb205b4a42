"""The public Python API: every command is one function at the top level returning a result (``summary()``,
``to_dict()``) whose keywords are the command's flags with the same defaults, old module paths keep working
(with a DeprecationWarning), and prefkit.trl stays the documented path of the trainer."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

import prefkit
import prefkit.job_results
from prefkit.cli import COMMANDS, cli

#: command -> (its library function, where the function's ``**keywords`` go: "build" = BuildOptions' flat names,
#: "options" = the command's options model (prefkit.commands.flags.COMMANDS), "module:Class" = that option model's fields, None = nowhere)
FUNCTIONS = {
    "build": ("build", "build"),
    "detect": ("detect", "build"),
    "presets": ("presets", None),
    "stats": ("stats", "prefkit.output.stats:StatsOptions"),
    "reflogps": ("reflogps", "options"),
    "score": ("score", "options"),
    "verify": ("verify", "options"),
    "push": ("push", "prefkit.publish.options:PushOptions"),
    "report": ("report", "prefkit.report.options:ReportOptions"),
    "generate": ("generate", "options"),
}
#: commands that pass only the options the user gave (click's default None or () stands for the library's default)
ONLY_GIVEN = {"build", "detect", "stats", "report", "push"}
#: (command or "*", flag) -> why the flag is not a keyword of the function, or has another default
EXCEPTIONS = {
    ("*", "--json"): "how the CLI prints the result (result.to_dict()); the function returns it",
    ("*", "--quiet"): "how the CLI prints; the function's progress=False is the library's quiet",
    ("*", "--debug"): "the CLI's tracebacks; Python raises anyway",
    ("report", "--open"): "the CLI opens the written page in a browser; Python gets the path (result.path)",
    **{
        (command, "--recipe"): "the file's options: options=<Options>.from_file(path) in Python"
        for command in ("reflogps", "score", "verify", "generate")
    },
}


def _context() -> click.Context:
    """The CLI's context as click makes it (its context settings: ``-h`` too), so that the help option each command
    caches is the one `prefkit --help` and docs/cli.md show."""
    return click.Context(cli, **cli.context_settings)


def _keyword(param: click.Parameter) -> tuple[str, bool]:
    """(the keyword a flag names, whether the flag negates it): ``--min-margin`` -> min_margin,
    ``--no-prefix-sharing`` (a plain flag storing ``no_prefix_sharing``) -> (prefix_sharing, True); a flag that
    stores its keyword itself (``--no-prefix-sharing`` storing ``prefix_sharing=False``) is not negated."""
    long = next((o for o in param.opts if o.startswith("--")), None)
    if long is None:  # a short flag only (`generate -n`): its keyword is the parameter's name
        return str(param.name), False
    name = long[2:].replace("-", "_")
    if name.startswith("no_") and param.name == name[3:]:  # stores the keyword itself (prefix_sharing=False)
        return name[3:], False
    negated = name.startswith("no_") and not param.secondary_opts
    return (name[3:], True) if negated else (name, False)


def _options_model(target: str | None):
    """The option model ``"module:Class"`` names (None for the other targets)."""
    if target is None or ":" not in target:
        return None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _kwargs_default(target: str | None, command: str, name: str) -> object:
    """The default of a keyword the function takes through ``**keywords``; KeyError when it does not."""
    model = _options_model(target)
    if model is not None:
        return model.model_fields[name].get_default(call_default_factory=True)
    if target == "build":
        from prefkit.options import GROUP_OF, GROUPS

        info = GROUPS[GROUP_OF[name]].model_fields[name]
        return info.get_default(call_default_factory=True)
    if target == "options":
        from prefkit.commands.flags import command_model

        return command_model(command).model_fields[name].get_default(call_default_factory=True)
    raise KeyError(name)


def _library_default(function: object, target: str | None, command: str, name: str) -> object:
    params = inspect.signature(function).parameters  # type: ignore[arg-type]
    if name in params and params[name].kind not in (params[name].VAR_KEYWORD, params[name].VAR_POSITIONAL):
        default = params[name].default
        return None if default is inspect.Parameter.empty else default
    return _kwargs_default(target, command, name)


def _same(click_default: object, library: object, command: str) -> bool:
    if click_default in (None, ()) and command in ONLY_GIVEN:  # not given: not passed
        return True
    as_seq = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return as_seq(click_default) == as_seq(library)


#: a command's argument whose keyword has another name in its function
ARGUMENT_KEYWORDS = {"out": "out_dir"}


def test_every_command_has_a_function():
    """Each command's arguments are its function's first parameters, in order; the function is documented and
    returns the command's result."""
    assert set(FUNCTIONS) == set(COMMANDS)
    ctx = _context()
    for command, (name, _) in FUNCTIONS.items():
        function = getattr(prefkit, name)
        signature = inspect.signature(function)
        arguments = [p.name for p in cli.get_command(ctx, command).params if isinstance(p, click.Argument)]
        leading = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert leading[: len(arguments)] == [ARGUMENT_KEYWORDS.get(a, a) for a in arguments], command
        assert "Result" in str(signature.return_annotation), command
        doc = inspect.getdoc(inspect.unwrap(function)) or ""
        assert len(doc.split("\n\n")[0]) > 20, f"{name}() has no summary line"


@pytest.mark.parametrize("command", sorted(FUNCTIONS))
def test_every_flag_is_a_keyword_with_the_same_default(command):
    name, target = FUNCTIONS[command]
    function = getattr(prefkit, name)
    ctx = _context()
    click_command = cli.get_command(ctx, command)
    sub = click.Context(click_command, parent=ctx)
    problems = []
    for param in click_command.params:
        if not isinstance(param, click.Option):
            continue
        long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if (command, long) in EXCEPTIONS or ("*", long) in EXCEPTIONS:
            continue
        keyword, negated = _keyword(param)
        try:
            library = _library_default(function, target, command, keyword)
        except KeyError:
            problems.append(f"{long}: {name}() has no keyword {keyword!r}")
            continue
        default = param.get_default(sub)
        default = None if type(default).__name__ == "Sentinel" else default  # click 8.3: not set
        default = () if param.multiple and default is None else default
        library = () if param.multiple and library is None else library  # a repeatable flag not given
        if negated:
            default = not default
        elif param.is_flag and default is None and library is False:
            default = False  # a flag not given
        if not _same(default, library, command):
            problems.append(f"{long}: default {default!r} on the CLI, {keyword}={library!r} in {name}()")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "command", sorted(c for c, (_, target) in FUNCTIONS.items() if _options_model(target) is not None)
)
def test_keywords_go_to_the_options_model(command, tmp_path):
    """A function that takes its flags through ``**keywords`` and an ``options`` object validates them against that
    model: an unknown keyword or a value the option cannot take is an OptionError naming it, and the options
    object is the same as the keywords."""
    from prefkit.errors import OptionError

    name, target = FUNCTIONS[command]
    function, model = getattr(prefkit, name), _options_model(target)
    params = inspect.signature(function).parameters
    assert params["options"].default is None and any(p.kind is p.VAR_KEYWORD for p in params.values())
    args = [tmp_path, "me/set"] if command == "push" else [tmp_path]
    with pytest.raises(OptionError, match="unknown option\\(s\\) no_such_option"):
        function(*args, no_such_option=1)
    first = next(n for n, info in model.model_fields.items() if info.annotation in (int, bool))
    with pytest.raises(OptionError, match=f"^{first}=\\.\\.\\.: "):
        function(*args, **{first: "many"})
    assert model.create(model()) == model()
    with pytest.raises(OptionError, match=f"options must be a {model.__name__}"):
        function(*args, options=object())
    assert model.create({first: model.model_fields[first].default}) == model()


def test_exceptions_name_real_flags():
    ctx = _context()
    for (command, long), reason in EXCEPTIONS.items():
        commands = FUNCTIONS if command == "*" else [command]
        found = [
            c for c in commands for p in cli.get_command(ctx, c).params if long in getattr(p, "opts", [])
        ] or (["cli"] if long in [o for p in cli.params for o in p.opts] else [])
        assert found and reason, (command, long)


def test_every_lazy_name_is_visible_to_type_checkers():
    tree = ast.parse(Path(prefkit.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == dict(prefkit._LAZY)
    for (
        name,
        module,
    ) in prefkit._LAZY.items():  # prefkit.reflogps is the callable package wrapping the function
        assert getattr(importlib.import_module(module), name) is inspect.unwrap(getattr(prefkit, name))


@pytest.mark.parametrize("name", sorted(name for name, _ in FUNCTIONS.values()))
def test_every_command_returns_a_result_with_summary_and_to_dict(name):
    import prefkit.results

    hints = inspect.signature(getattr(prefkit, name)).return_annotation
    for each in str(hints).split("|"):  # `score` returns one of three results
        type_name = each.strip().rsplit(".", 1)[-1]
        result_type = getattr(prefkit, type_name, None) or getattr(prefkit.job_results, type_name)
        assert dataclasses.is_dataclass(result_type), type_name
        # its own text (the base's summary() raises NotImplementedError), and the JSON object --json prints
        assert result_type.summary is not prefkit.results.Result.summary, type_name
        assert inspect.signature(result_type.summary).return_annotation in ("str", str), type_name
        assert "dict" in str(inspect.signature(result_type.to_dict).return_annotation), type_name


def test_the_light_commands_return_the_text_they_print_and_a_json_object(tmp_path, capsys):
    """A real call of the commands that need no model or Hub: ``summary()`` is what the CLI prints, ``to_dict()``
    what ``--json`` prints."""
    import json

    from tests.builders import write_rows

    src = write_rows(tmp_path / "pairs.jsonl", 12)
    out = tmp_path / "out"
    results = {
        "presets": prefkit.presets(),
        "detect": prefkit.detect(str(src)),
        "build": prefkit.build(src, out),
        "stats": prefkit.stats(out),
    }
    assert results["build"].to_dict()["totals"]["kept"] == 12
    assert results["stats"].to_dict()["splits"]["train"]["rows"] == 12
    assert results["detect"].to_dict()["splits"]
    assert len(results["presets"].to_dict()["presets"]) > 5
    args = {"presets": ["presets"], "detect": ["detect", str(src)], "stats": ["stats", str(out)]}
    for command, result in results.items():
        data = result.to_dict()
        assert json.loads(json.dumps(data, default=str)) and result.summary().strip(), command
        if command in args:
            printed, _ = _cli(args[command], capsys)
            assert printed.strip() == result.summary().strip(), command
            printed, _ = _cli([*args[command], "--json"], capsys)
            assert json.loads(printed) == json.loads(json.dumps(data, default=str)), command


def _cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[str, str]:
    from prefkit.cli import main

    capsys.readouterr()
    main(args)
    out = capsys.readouterr()
    return out.out, out.err


def test_the_cli_prints_the_result(tmp_path, capsys):
    """What a command prints is its function's ``summary()`` / ``to_dict()``."""
    import json

    from tests.builders import write_rows

    src = write_rows(tmp_path / "pairs.jsonl", 12)
    out, err = _cli(["presets"], capsys)
    assert out == prefkit.presets().summary() + "\n" and "presets." in err
    out, _ = _cli(["presets", "--json"], capsys)
    assert json.loads(out) == prefkit.presets().to_dict()
    out, _ = _cli(["detect", str(src)], capsys)
    assert out == prefkit.detect(src).summary() + "\n"
    out, _ = _cli(["detect", str(src), "--json"], capsys)
    assert json.loads(out) == prefkit.detect(src).to_dict()
    out, err = _cli(["build", str(src), "--dry-run", "--json"], capsys)
    result = prefkit.build(src, dry_run=True)
    printed, expected = json.loads(out), result.to_dict()
    assert printed.pop("seconds") >= 0 and expected.pop("seconds") >= 0 and printed == expected
    assert err.splitlines()[:4] == result.summary().splitlines()[:4]
    assert result["splits"] == result.manifest["splits"]  # dict-style reading of 0.2 results


@pytest.mark.parametrize(
    "old, name",
    [
        ("prefkit.records", "PreferenceRecord"),
        ("prefkit.templates", "tokenize_pairs"),
        ("prefkit.chat_templates", "ChatRenderer"),
        ("prefkit.presets", "all_presets"),
        ("prefkit.mix", "parse_source"),
        ("prefkit.hub", "push"),
        ("prefkit.stats", "compute_stats"),
    ],
)
def test_old_module_paths_still_import_with_a_deprecation_warning(old, name):
    code = (
        "import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module({old!r}); print(hasattr(m, {name!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "warned" in out.stdout and "moved to" in out.stdout and out.stdout.strip().endswith("True"), out


@pytest.mark.parametrize("old", ["prefkit.stats", "prefkit.presets"])
def test_an_old_path_named_like_a_function_leaves_the_function_working(old, tmp_path):
    """``import prefkit.stats`` sets the package's ``stats`` to the module: the module calls the function too, so
    ``prefkit.stats(out)`` works after the import as before it (and the module's names still read)."""
    from tests.builders import write_rows

    out = tmp_path / "out"
    prefkit.build(write_rows(tmp_path / "pairs.jsonl", 6), out)
    name = old.rpartition(".")[2]
    call = f"prefkit.stats({str(out)!r}).splits['train']['rows']" if name == "stats" else "len(prefkit.presets().presets)"
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        f"import prefkit; before = {call}\n"
        f"import {old}; after = {call}\n"
        f"print(before == after, callable(prefkit.{name}), hasattr(prefkit.{name}, 'compute_stats' if {name!r} == 'stats' else 'all_presets'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr[-2000:]


def test_prefkit_trl_is_the_documented_path_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        module = importlib.import_module("prefkit.trl")
    assert module is importlib.import_module("prefkit.integrations.trl")
    assert hasattr(module, "check_against_manifest")


def test_errors_name_keywords_in_python_and_flags_on_the_cli(tmp_path, capsys):
    """One error, two readers: raised from Python it names the keyword, printed by the CLI the flag."""
    from prefkit.errors import OptionError, OutputError, SelectionError
    from tests.builders import write_rows

    src = write_rows(tmp_path / "pairs.jsonl", 6)
    out = tmp_path / "out"
    prefkit.build(src, out)
    with pytest.raises(OutputError, match="already exists") as err:
        prefkit.build(src, out)
    assert "pass overwrite=True to replace it, or choose another output=..." in err.value.hint
    assert "--overwrite" not in str(err.value)
    with pytest.raises(OptionError, match="greater than or equal to 1, got 0") as err:
        prefkit.build(src, top=0)
    assert err.value.message.startswith("top=...: ") and "--top" not in str(err.value)
    with pytest.raises(SelectionError, match="is not a fraction") as err:
        prefkit.build(src, test_size=2.0)
    assert err.value.message == "test_size=2.0 is not a fraction"

    for args, flag in [
        (
            ["build", str(src), "-o", str(out)],
            "Hint: pass --overwrite to replace it, or choose another --output",
        ),
        (["build", str(src), "--dry-run", "--test-size", "2"], "Error: --test-size 2.0 is not a fraction"),
    ]:
        with pytest.raises(SystemExit, match=r"^1$") as code:
            _cli(args, capsys)
        assert code.value.code == 1
        stderr = capsys.readouterr().err
        assert flag in stderr and "overwrite=True" not in stderr and "test_size=" not in stderr, stderr


def test_an_option_mention_renders_for_each_reader():
    from prefkit.errors import PrefkitError, option

    err = PrefkitError(
        f"{option('top')} needs a margin",
        f"pass {option('resume', False)}, {option('min_margin', 1)} or {option('chat_template', 'chatml')}",
    )
    assert (
        str(err) == "top=... needs a margin (hint: pass resume=False, min_margin=1 or chat_template='chatml')"
    )
    assert err.text("cli") == (
        "--top needs a margin",
        "pass --no-resume, --min-margin 1 or --chat-template chatml",
    )


def test_the_trainer_without_trl_names_the_extra():
    """Without TRL (simulated: a meta path finder refuses it), ``from prefkit.trl import PrecomputedRefDPOTrainer``
    raises an ImportError that names ``prefkit[trl]``; the helpers that need no TRL still import."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'trl' or name.startswith('trl.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from prefkit.trl import check_against_manifest, has_ref_columns\n"
        "for where in ('prefkit.trl', 'prefkit.integrations.trl'):\n"
        "    try:\n"
        "        exec(f'from {where} import PrecomputedRefDPOTrainer')\n"
        "    except ImportError as err:\n"
        "        print(where, type(err).__name__, err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out
    for line, where in zip(lines, ["prefkit.trl", "prefkit.integrations.trl"], strict=True):
        assert line.startswith(f"{where} DependencyError ") and "pip install 'prefkit[trl]'" in line, line


@pytest.mark.parametrize("command", ["reflogps", "score", "verify", "generate"])
def test_the_flags_of_a_model_command_are_its_options_models(command):
    """`reflogps`, `score`, `verify`, `generate`: each flag is a field of the command's options model, in the
    model's ``FLAGS`` order, with the field's help; an unknown keyword or a bad value is one OptionError."""
    from prefkit.commands.flags import command_model
    from prefkit.errors import OptionError

    model = command_model(command)
    ctx = _context()
    params = [p for p in cli.get_command(ctx, command).params if isinstance(p, click.Option)]
    generated = [p for p in params if p.name not in ("as_json", "quiet", "recipe")]
    assert [p.name for p in generated] == list(model.FLAGS)
    for param in generated:
        info = model.model_fields[param.name]
        needed = bool(info.json_schema_extra.get("required"))  # checked once --recipe is read, not by click
        assert param.help == info.description + (" Required (here or in --recipe)." if needed else ""), param.name
        assert not param.required, param.name
    with pytest.raises(OptionError, match="unknown option"):
        model.create(no_such_option=1)
    with pytest.raises(OptionError, match=r"lease_seconds|sample"):
        model.create(**({"sample": 0} if command == "verify" else {"lease_seconds": 0.1}))
