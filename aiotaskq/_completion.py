"""The command line's help examples and shell completion (``aiotaskq completion bash|zsh|fish``),
both made from the argparse parser itself, so they cannot drift from the options."""

from __future__ import annotations

import argparse
from typing import Final

# One or two typical invocations per subcommand, shown at the end of its --help.
EXAMPLES: Final = {
    "worker": ["aiotaskq worker app.tasks:queue --concurrency 50",
               "aiotaskq worker app.tasks:queue --processes 4 --metrics-port 9100",
               "aiotaskq worker app.tasks:queue --reload          # development"],
    "info": ["aiotaskq info app.tasks:queue", "aiotaskq info --queue emails --url redis://redis:6379/0 --json"],
    "schedules": ["aiotaskq schedules app.tasks:queue", "aiotaskq schedules app.tasks:queue --remove nightly-report"],
    "dashboard": ["aiotaskq dashboard app.tasks:queue --port 8080 --read-only"],
    "job": ["aiotaskq job app.tasks:queue 3f9c2a7b1d4e5f60 --json"],
    "jobs": ["aiotaskq jobs app.tasks:queue --status failed --task app.tasks.send_mail --limit 20"],
    "cancel": ["aiotaskq cancel app.tasks:queue 3f9c2a7b1d4e5f60 8e1d0c2b3a495867"],
    "requeue": ["aiotaskq requeue app.tasks:queue --all-failed", "aiotaskq requeue app.tasks:queue 3f9c2a7b1d4e5f60"],
    "purge": ["aiotaskq purge --queue emails --status succeeded"],
    "enqueue": ["aiotaskq enqueue app.tasks:queue app.tasks.send_mail --args '[42, \"ada@example.com\"]' --delay 60"],
    "pause": ["aiotaskq pause app.tasks:queue"],
    "resume": ["aiotaskq resume app.tasks:queue"],
    "check": ["aiotaskq check app.tasks:queue --this-host    # a Kubernetes liveness probe"],
    "completion": ['eval "$(aiotaskq completion bash)"       # in ~/.bashrc',
                   "aiotaskq completion fish > ~/.config/fish/completions/aiotaskq.fish"],
}  # fmt: skip


def add_examples(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Put each subcommand's examples at the end of its --help."""
    for name, parser in sub.choices.items():
        lines = EXAMPLES.get(name)
        if lines:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Subcommand -> its options (long forms first), from the parser."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, list[str]] = {}
    for name, p in sub.choices.items():
        flags = [s for a in p._actions for s in a.option_strings if s.startswith("--")]
        out[name] = sorted(set(flags))
    return out


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell`` (bash, zsh or fish)."""
    commands = _commands(parser)
    if shell == "fish":
        lines = [f"complete -c aiotaskq -f -n __fish_use_subcommand -a {name}" for name in commands]
        for name, flags in commands.items():
            lines += [f"complete -c aiotaskq -n '__fish_seen_subcommand_from {name}' -l {f[2:]}" for f in flags]
        return "\n".join(lines) + "\n"
    cases = "\n".join(f'    {name}) opts="{" ".join(flags)}" ;;' for name, flags in commands.items())
    body = f"""_aiotaskq() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(commands)}" -- "$cur"))
    return
  fi
  case "${{COMP_WORDS[1]}}" in
{cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -F _aiotaskq aiotaskq
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body
