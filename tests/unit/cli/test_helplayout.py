"""cli/helplayout.py leans on typer.core (not documented as public): an upgrade that moves what
it relies on fails here, naming the module, before a user sees a help screen change."""

from __future__ import annotations

from typing import Annotated

import typer
import typer.core

from meshbridge.cli import helplayout


def test_typer_still_has_the_classes_the_help_layout_builds_on() -> None:
    for name in ("TyperCommand", "TyperGroup", "TyperArgument", "TyperOption"):
        assert isinstance(getattr(typer.core, name, None), type), (
            f"typer.core.{name} is gone: see meshbridge/cli/helplayout.py"
        )
    assert issubclass(helplayout.Command, typer.core.TyperCommand)
    assert issubclass(helplayout.Group, typer.core.TyperGroup)


def test_a_command_names_its_values_and_shows_nothing_beside_a_flag() -> None:
    app = typer.Typer()

    @app.command(cls=helplayout.Command)
    def cmd(
        name: str,
        days: Annotated[int, typer.Option()] = 1,
        force: Annotated[bool, typer.Option()] = False,
    ) -> None:
        """Do it.

        A second paragraph
        broken in the source."""

    command = typer.main.get_command(app)
    assert isinstance(command, helplayout.Command), "typer no longer builds the cls= given"
    with command.make_context("cmd", ["x"]) as ctx:
        params = {p.name: p for p in command.get_params(ctx)}
    assert params["days"].metavar == "DAYS", "see meshbridge/cli/helplayout.py"
    assert params["force"].metavar == ""
    assert params["name"].metavar == "NAME"
    assert "A second paragraph broken in the source." in (command.help or "")
