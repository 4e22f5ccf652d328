"""Run real istioctl on one cluster's rendered folder and read its verdict.

Two judges, both Istio's own code, both offline:

- ``istioctl analyze --use-kube=false --all-namespaces FOLDER`` runs Istio's analyzers (schema
  validation plus cross-object checks: gateway conflicts, missing references, ...) on every file
  under FOLDER (directories are always recursive; the old ``-R`` flag was removed).
- ``istioctl validate -f FOLDER`` runs, file by file, the validation behind istiod's admission
  webhook (``validation.istio.io``), which decides what a real cluster refuses.

One call judges one cluster's folder: every cluster runs its own Istio, so objects of two clusters
analyzed together could conflict where the real clusters never see each other.

Why analyze's human ("log") output and not ``-o json``: with ``-o json`` or ``-o yaml`` istioctl
exits 0 whatever it finds, and a file it cannot parse is only a log line on stderr, skipped. In
the log format the exit code is the reliable signal (0 clean, 79 messages at or above
``--failure-threshold``, any other code a file it could not read or a crash); the message lines
are read only to name codes for the allow-list and for reports, and a disagreement between the
two (exit 79 without a readable Error or Warning line) is itself a failure.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ANALYZE_ISSUES_FOUND = 79  # istioctl analyze's exit code for messages at the failure threshold
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # what both commands read from a directory
TIMEOUT_S = 300

_MESSAGE = re.compile(
    r"^(?P<level>Error|Warning|Info) \[(?P<code>IST\d{4})\] \((?P<origin>.*?)\) (?P<text>.*)$"
)
_ANALYZED_MANY = re.compile(r"No validation issues found when analyzing:\n((?:  - .*(?:\n|$))+)")
_ANALYZED_ONE = re.compile(r"No validation issues found when analyzing (.+)\.$", re.MULTILINE)
_VALID = re.compile(r'^"(.+)" is valid$', re.MULTILINE)
_WARNED = re.compile(r'^"(.+)" has warnings:', re.MULTILINE)


@dataclass(frozen=True)
class IstioTools:
    """Istio's binaries as built by ``scripts/k8s-testenv build --istio``."""

    istioctl: Path
    pilot_discovery: Path
    pilot_agent: Path


@dataclass(frozen=True)
class Message:
    """One analyzer message, as istioctl prints it."""

    level: str  # Error | Warning | Info
    code: str  # ISTxxxx
    origin: str  # "Kind namespace/name file:line"
    text: str

    def __str__(self) -> str:
        return f"{self.level} [{self.code}] ({self.origin}) {self.text}"


@dataclass(frozen=True)
class Verdict:
    """What one istioctl command said about one folder; clean when ``problems`` is empty."""

    judge: str
    folder: Path
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    problems: tuple[str, ...]
    messages: tuple[Message, ...] = ()
    notes: tuple[Message, ...] = ()  # messages that do not fail: Info, or an allow-listed code

    @property
    def clean(self) -> bool:
        return not self.problems

    def report(self) -> str:
        """The problems and istioctl's full output, for an assertion message."""
        return "\n".join(
            [
                f"{self.judge} rejects {self.folder}:",
                *(f"  - {problem}" for problem in self.problems),
                f"$ {shlex.join(self.argv)}   # exit {self.returncode}",
                "--- stdout ---",
                self.stdout.rstrip(),
                "--- stderr ---",
                self.stderr.rstrip(),
            ]
        )


def manifest_files(folder: Path) -> list[Path]:
    """Every file under folder that istioctl reads (it picks files by extension)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)


def _run(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
        check=False,
    )


def _analyzed_files(stderr: str) -> set[str]:
    """The files analyze lists after "No validation issues found" (printed only when clean)."""
    many = _ANALYZED_MANY.search(stderr)
    if many:
        return {line.removeprefix("  - ") for line in many.group(1).splitlines()}
    return set(_ANALYZED_ONE.findall(stderr))


def analyze(istioctl: Path, folder: Path, allowed: Mapping[str, str]) -> Verdict:
    """``istioctl analyze`` on folder: no Error or Warning message unless its code is allowed."""
    argv = (
        str(istioctl),
        "analyze",
        "--use-kube=false",
        "--all-namespaces",
        "--color=false",
        "--failure-threshold=Warning",
        str(folder),
    )
    proc = _run(argv)
    found = (_MESSAGE.match(line) for line in proc.stdout.splitlines())
    messages = tuple(Message(**m.groupdict()) for m in found if m)
    failing = [m for m in messages if m.level != "Info" and m.code not in allowed]
    problems = [str(m) for m in failing]
    if proc.returncode not in (0, ANALYZE_ISSUES_FOUND):
        problems.append(
            f"exit {proc.returncode}: a file could not be parsed, or istioctl failed "
            f"(0 is clean, {ANALYZE_ISSUES_FOUND} is issues found)"
        )
    elif proc.returncode == ANALYZE_ISSUES_FOUND and not any(m.level != "Info" for m in messages):
        problems.append(
            f"exit {ANALYZE_ISSUES_FOUND} (issues found) but no Error or Warning line read"
        )
    if proc.returncode == 0 and not messages:
        listed = _analyzed_files(proc.stderr)
        unseen = [str(f) for f in manifest_files(folder) if str(f) not in listed]
        if unseen:
            problems.append(f"analyze does not say it analyzed: {', '.join(unseen)}")
    return Verdict(
        judge="istioctl analyze",
        folder=folder,
        argv=argv,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        problems=tuple(problems),
        messages=messages,
        notes=tuple(m for m in messages if m not in failing),
    )


def validate(istioctl: Path, folder: Path) -> Verdict:
    """``istioctl validate`` on folder: exit 0 and every file reported plainly "is valid".

    validate exits 0 on warnings and prints ``"FILE" has warnings:`` instead of ``is valid``, so
    requiring every file to be reported valid rejects warnings too, and proves each was read.
    """
    argv = (str(istioctl), "validate", "--filename", str(folder))
    proc = _run(argv)
    output = proc.stdout + proc.stderr
    problems: list[str] = []
    if proc.returncode != 0:  # the errors, as "* Kind/namespace/name: message" lines
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("* ")]
        problems.append(" ".join([f"exit {proc.returncode}:", *errors]))
    warned = _WARNED.findall(output)
    problems += [f"warnings for {path}" for path in warned]
    if proc.returncode == 0:
        seen = {*_VALID.findall(output), *warned}
        problems += [f"not reported: {f}" for f in manifest_files(folder) if str(f) not in seen]
    return Verdict(
        judge="istioctl validate",
        folder=folder,
        argv=argv,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        problems=tuple(problems),
    )


def judge(istioctl: Path, folder: Path, allowed: Mapping[str, str]) -> tuple[Verdict, Verdict]:
    """Both judges on one cluster's folder."""
    return analyze(istioctl, folder, allowed), validate(istioctl, folder)


def judge_all(
    istioctl: Path, folders: Iterable[Path], allowed: Mapping[str, str], workers: int = 2
) -> list[Verdict]:
    """Both judges on each folder (one cluster per call), a few folders at a time, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = list(pool.map(lambda folder: judge(istioctl, folder, allowed), folders))
    return [verdict for pair in pairs for verdict in pair]
