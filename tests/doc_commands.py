"""The shell commands of the README, docs/ and CONTRIBUTING.md, and where each one runs.

A command is a line of a ``sh``/``bash``/``shell`` block (comment lines and blank lines are not
commands; a line ending in ``\\`` continues on the next), or a ``$ `` line of a ``console``
block or of an unlabelled block that shows a session (its other lines are the output the page
shows). Each command is either

- **run by a test**, which reads it from the page and executes that text in one shell per
  block (so an ``export`` or ``cd`` holds for the lines after it): ``RUNS`` says which test,
  the exit status the page implies, what its output must contain, and each placeholder the
  test replaces, with the reason;
- **covered elsewhere** (``COVERED_ELSEWHERE``: the ``make`` targets, which the suite cannot
  run from inside itself), with the test or check that covers it;
- or **marked in the page** with a comment saying why no test runs it: a comment line
  ``# not run by the tests: REASON`` marks every command after it in the block, a trailing
  ``# ... not run by the tests: REASON`` its own line. ``NOT_RUN`` holds the same for
  docs/deployment.md, whose text is not edited from here.

tests/test_doc_commands.py fails for a command that is none of these, and for an entry here
that no page holds any more.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
MARKER = "not run by the tests:"
FENCE = re.compile(r"^( *)(```|~~~)([\w-]*)")

DEMO_TEST = "tests/test_project.py::test_the_docs_commands_run_on_the_demo_instance"
DRIFT_TEST = "tests/test_project.py::test_drift_by_hand_for_a_registry_batch_and_a_file"
ONBOARDING_TEST = (
    "tests/test_onboarding_commands.py::"
    "test_the_documented_onboarding_and_manual_materialization_commands_run"
)


def pages() -> list[Path]:
    """Every Markdown page a reader is sent to: the README, CONTRIBUTING.md and docs/."""
    docs = sorted((PROJECT_ROOT / "docs").rglob("*.md"))
    return [PROJECT_ROOT / "README.md", PROJECT_ROOT / "CONTRIBUTING.md", *docs]


@dataclass(frozen=True)
class Command:
    """One command as the page shows it."""

    page: str  # relative to the project root
    line: int  # where it starts, 1-based
    block: int  # which code block of the page, 0-based
    text: str  # as typed: the block's indent removed, continuations kept, no trailing comment
    marker: str | None = None  # the page's reason why no test runs it
    output: str = ""  # the output the page shows after it (console blocks)

    @property
    def key(self) -> str:
        """The text on one line with single spaces: what ``RUNS`` and the markers name."""
        return " ".join(self.text.replace("\\\n", " ").split())

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """``line`` without its trailing shell comment, and the comment: a ``#`` after a blank,
    outside quotes (``'{"a": 1}'`` and ``"x # y"`` keep theirs)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def _blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line number, language, lines dedented by the fence's indent) of each fenced
    block."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if opening := FENCE.match(lines[index]):
            indent, fence, language = opening.groups()
            closing = re.compile(rf"^{indent}{re.escape(fence)}\s*$")
            body: list[str] = []
            start = index + 1
            index += 1
            while index < len(lines) and not closing.match(lines[index]):
                body.append(lines[index][len(indent) :])
                index += 1
            blocks.append((start + 1, language, body))
        index += 1
    return blocks


def _session(page: str, block: int, start: int, body: list[str]) -> list[Command]:
    """The ``$ `` lines of a console block, each with the output shown after it."""
    commands: list[Command] = []
    for offset, line in enumerate(body):
        if not line.startswith("$ "):
            continue
        output = []
        for following in body[offset + 1 :]:
            if following.startswith("$ "):
                break
            output.append(following)
        text, comment = split_comment(line[2:])
        marker = comment.split(MARKER, 1)[1].strip() if MARKER in comment else None
        commands.append(
            Command(page, start + offset, block, text, marker, "\n".join(output).strip("\n"))
        )
    return commands


def _script(page: str, block: int, start: int, body: list[str]) -> list[Command]:
    """The commands of a sh/bash/shell block."""
    commands: list[Command] = []
    block_marker: str | None = None
    offset = 0
    while offset < len(body):
        first = offset
        line = body[offset]
        stripped = line.strip()
        if stripped.startswith("#"):
            if MARKER in stripped:
                block_marker = stripped.split(MARKER, 1)[1].strip()
            offset += 1
            continue
        if not stripped:
            offset += 1
            continue
        parts = [line]
        while parts[-1].rstrip().endswith("\\") and offset + 1 < len(body):
            offset += 1
            parts.append(body[offset])
        text, comment = split_comment("\n".join(parts))
        marker = comment.split(MARKER, 1)[1].strip() if MARKER in comment else block_marker
        commands.append(Command(page, start + first, block, text, marker))
        offset += 1
    return commands


def documented_commands(page: Path) -> list[Command]:
    """Every command of ``page``'s shell blocks, in order."""
    relative = page.relative_to(PROJECT_ROOT).as_posix()
    commands: list[Command] = []
    for number, (start, language, body) in enumerate(_blocks(page.read_text(encoding="utf-8"))):
        shown = [line for line in body if line.strip()]
        if language == "console" or (not language and shown and shown[0].startswith("$ ")):
            commands.extend(_session(relative, number, start, body))
        elif language in SHELL_LANGUAGES:
            commands.extend(_script(relative, number, start, body))
    return commands


def all_commands() -> list[Command]:
    return [command for page in pages() for command in documented_commands(page)]


@dataclass(frozen=True)
class Substitution:
    """A placeholder of the page and what the test types instead (``{name}`` fields come from
    the test: ``{tmp}``, ``{bin}``, ...), with the reason."""

    placeholder: str
    value: str
    reason: str


@dataclass(frozen=True)
class Run:
    """Where a command runs and what the page implies about it."""

    test: str
    exit: tuple[int, ...] = (0,)  # one per occurrence on the page, or one for all
    output: tuple[str, ...] = ()  # text its output must contain
    substitutions: tuple[Substitution, ...] = ()

    def exit_status(self, occurrence: int) -> int:
        return self.exit[occurrence] if len(self.exit) > 1 else self.exit[0]


VENV = Substitution(
    ".venv/bin/activate",
    "{bin}/activate",
    "the project copy has no .venv of its own: the suite's environment is what `make install` "
    "built",
)
BATCH = "data/sample/batches/batch-001.csv"
KEYS_2027 = Substitution("/etc/lifecycle/keys-2027", "{tmp}/keys-2027", "a test may not write /etc")


def _demo(
    *, exit: tuple[int, ...] = (0,), output: tuple[str, ...] = (), **subs: Substitution
) -> Run:
    return Run(DEMO_TEST, exit, output, tuple(subs.values()))


# (page, command key) -> where it runs. The onboarding sections are not listed: their test
# reads every command of its sections (ONBOARDING_SECTIONS in test_onboarding_commands).
RUNS: dict[tuple[str, str], Run] = {
    # The demo instance after `lifecycle demo`, in test_project's project copy, in this order.
    ("docs/many-models.md", "lifecycle status"): _demo(),
    ("docs/deployment-package.md", "source .venv/bin/activate"): _demo(venv=VENV),
    ("docs/deployment-package.md", "export LIFECYCLE_DEV_KEYS=1"): _demo(),
    ("docs/deployment-package.md", "export LIFECYCLE_MODEL=breast_cancer"): _demo(),
    ("docs/deployment-package.md", "lifecycle verify data-v2"): _demo(output=("verified",)),
    (
        "docs/deployment-package.md",
        f"lifecycle predict data-v2 {BATCH} --output predictions.csv",
    ): _demo(output=("300 prediction(s) written to",)),
    (
        "docs/deployment-package.md",
        f"lifecycle predict data-v2 {BATCH} --out-of-range reject",
    ): _demo(exit=(2,), output=("the out-of-range policy is 'reject'",)),
    ("docs/runbooks/model-misbehaves.md", "source .venv/bin/activate"): _demo(venv=VENV),
    ("docs/runbooks/model-misbehaves.md", "export LIFECYCLE_DEV_KEYS=1"): _demo(),
    ("docs/runbooks/model-misbehaves.md", "export LIFECYCLE_MODEL=breast_cancer"): _demo(),
    ("docs/runbooks/model-misbehaves.md", "lifecycle status"): _demo(output=("data-v2 since",)),
    ("docs/runbooks/model-misbehaves.md", "lifecycle history --at 2026-11-26T09:42:35Z"): _demo(
        output=("data-v2",),
        time=Substitution(
            "2026-11-26T09:42:35Z",
            "{now}",
            "the complaint's time: a moment after the test promoted data-v2 (the page's date "
            "is before the test ran)",
        ),
    ),
    ("docs/runbooks/model-misbehaves.md", "lifecycle replay data-v2 --input case.csv"): _demo(
        output=("sha256",),
        case=Substitution(
            "case.csv", BATCH, "the complained-about rows: any rows of the model's input schema"
        ),
    ),
    ("docs/runbooks/model-misbehaves.md", "lifecycle reproduce data-v2"): _demo(
        output=("verdict: identical",)
    ),
    (
        "docs/runbooks/model-misbehaves.md",
        'lifecycle rollback --approver "on-call: j.doe" --reason "v2 flags benign cases in '
        'clinic B"',
    ): _demo(output=("rollback", "data-v1", "replaced data-v2")),
    ("docs/runbooks/model-misbehaves.md", "lifecycle audit export --version data-v2"): _demo(
        output=("audit.html",)
    ),
    ("docs/runbooks/model-misbehaves.md", "lifecycle reproduce --list-worktrees"): _demo(),
    ("docs/runbooks/model-misbehaves.md", "lifecycle reproduce --prune --keep 2"): _demo(),
    ("docs/runbooks/model-misbehaves.md", "lifecycle reproduce --prune --older-than 14d"): _demo(),
    ("docs/runbooks/model-misbehaves.md", "lifecycle reproduce --prune"): _demo(),
    (
        "docs/governance.md",
        "lifecycle --model breast_cancer audit checkpoint "
        "--output /mnt/audit-witness/breast_cancer",
    ): _demo(
        witness=Substitution(
            "/mnt/audit-witness", "{tmp}/audit-witness", "the external store, a folder here"
        )
    ),
    (
        "docs/governance.md",
        "lifecycle --model breast_cancer audit verify --checkpoint witness/00000012-....json",
    ): _demo(
        output=("verify",),
        copy=Substitution(
            "witness/00000012-....json",
            "{tmp}/audit-witness/breast_cancer/*.json",
            "the copy fetched back: the checkpoint the line before wrote",
        ),
    ),
    **{
        ("docs/governance.md", key): _demo(
            folder=Substitution("DIR", "{tmp}/openssl-keys", "a key folder of the test's")
        )
        for key in (
            "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt "
            "-out DIR/signing-key.pem",
            "openssl ec -in DIR/signing-key.pem -pubout -out DIR/signing-key.pub",
            "openssl rand -hex 32 > DIR/audit.key && chmod 600 DIR/signing-key.pem DIR/audit.key",
        )
    },
    ("docs/runbooks/rotating-keys.md", "lifecycle keys create /etc/lifecycle/keys-2027"): _demo(
        keys=KEYS_2027
    ),
    (
        "docs/runbooks/rotating-keys.md",
        "lifecycle keys trust /etc/lifecycle/keys-2027/signing-key.pub",
    ): _demo(keys=KEYS_2027),
    (
        "docs/runbooks/rotating-keys.md",
        "export LIFECYCLE_SIGNING_KEY=/etc/lifecycle/keys-2027/signing-key.pem",
    ): _demo(keys=KEYS_2027),
    (
        "docs/runbooks/rotating-keys.md",
        "export LIFECYCLE_SIGNING_PUBLIC_KEY=/etc/lifecycle/keys-2027/signing-key.pub",
    ): _demo(keys=KEYS_2027),
    ("docs/runbooks/rotating-keys.md", "lifecycle keys list"): _demo(),
    ("docs/runbooks/rotating-keys.md", "lifecycle --model breast_cancer audit verify"): _demo(
        output=("record(s) verify",)
    ),
    # docs/deployment.md's key commands, in a scratch folder (its cluster commands are NOT_RUN).
    **{
        ("docs/deployment.md", key): _demo()
        for key in (
            "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt "
            "-out signing-key.pem",
            "openssl ec -in signing-key.pem -pubout -out signing-key.pub",
            "lifecycle keys create ./keys",
            "lifecycle keys trust ./keys/signing-key.pub --keyring ./keyring",
        )
    },
    **{
        ("docs/drift.md", f"lifecycle --model breast_cancer drift calibrate {options}"): _demo(
            output=("batch verdict",),
            draws=Substitution(
                "--false-alarm-rate 0.01",
                "--false-alarm-rate 0.05 --draws 20",
                "200 calm batches at 0.01 take 24 s a command; 20 (the fewest that can show "
                "0.05) take the same path",
            ),
        )
        for options in (
            "--batch-size 60 --false-alarm-rate 0.01",
            "--batch-size 60 --false-alarm-rate 0.01 --data data/sample/versions/data-v1/"
            "breast_cancer.csv",
            "--batch-size 60 --false-alarm-rate 0.01 --numeric wasserstein",
        )
    },
    ("docs/runbooks/run-died.md", "lifecycle runs recover --all"): _demo(),
    ("docs/runbooks/run-died.md", "lifecycle audit verify"): _demo(exit=(1,), output=("torn",)),
    ("docs/runbooks/run-died.md", "lifecycle --model MODEL audit recover"): _demo(
        model=Substitution("MODEL", "breast_cancer", "the model whose log `audit verify` named")
    ),
    ("docs/runbooks/damaged-instance.md", "lifecycle doctor"): _demo(
        exit=(1, 0), output=("checked",)
    ),
    ("docs/runbooks/damaged-instance.md", "lifecycle instance rebuild"): _demo(
        output=("restored",)
    ),
    # The drift test of test_project, on the same instance, keeps its own assertions.
    ("docs/drift.md", "lifecycle --model breast_cancer drift --batch batch-002"): Run(DRIFT_TEST),
    (
        "docs/drift.md",
        "lifecycle --model breast_cancer drift --batch new_rows.csv --version data-v1",
    ): Run(
        DRIFT_TEST,
        substitutions=(Substitution("new_rows.csv", BATCH, "a local file in the declared format"),),
    ),
}

# The `make` targets: the suite cannot run them from inside itself.
COVERED_ELSEWHERE: dict[str, str] = {
    "make demo": (
        "tests/test_project.py::test_demo_runs_twice_and_the_second_run_reproduces runs its "
        "recipe (`dvc repro`, `lifecycle demo`) in a project copy, and "
        "tests/test_doc_commands.py checks that the recipe is those two commands"
    ),
    "make test": "the suite itself; CI runs it (.ci/run)",
    "make ui": (
        "a server that runs until stopped (dagster dev); tests/test_ui.py drives a real "
        "webserver and browser over a demo instance"
    ),
}

_CLUSTER = "needs a Kubernetes cluster (tests/test_k8s_manifests.py checks the manifests)"
# docs/deployment.md is not edited from here: its markers live in the tests.
NOT_RUN: dict[tuple[str, str], str] = {
    **{
        ("docs/deployment.md", key): _CLUSTER
        for key in (
            "kubectl -n lifecycle create secret generic lifecycle-signing-key "
            "--from-file=./keys/signing-key.pem --from-file=./keys/signing-key.pub "
            "--from-file=./keys/audit.key",
            "kubectl -n lifecycle create configmap lifecycle-trusted-keys --from-file=./keyring/",
            "kubectl -n lifecycle create secret generic lifecycle-postgresql "
            "--from-literal=postgresql-password=...",
            "kubectl -n lifecycle create secret generic lifecycle-postgres-url "
            "--from-literal=LIFECYCLE_POSTGRES_URL='postgresql://dagster:...@postgres.example."
            "internal:5432/dagster?sslmode=require'",
            "kubectl -n lifecycle create secret generic lifecycle-object-store "
            "--from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...",
            "kubectl -n lifecycle create secret generic lifecycle-git-credentials "
            "--from-file=git-credentials=./git-credentials",
            "kubectl -n lifecycle apply -f deploy/k8s/storage.yaml",
            "kubectl -n lifecycle create job --from=cronjob/lifecycle-registry-sync "
            "registry-first-clone",
            "helm upgrade --install lifecycle dagster/dagster --version 1.13.27 -n lifecycle "
            "-f deploy/k8s/values.yaml",
        )
    },
    (
        "docs/deployment.md",
        "docker build -f deploy/Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) "
        "-t registry.example.com/ml/lifecycle-pipeline:0.1.0 .",
    ): ("needs a Docker daemon and the network (tests/test_deploy_files.py checks the Dockerfile)"),
    ("docs/deployment.md", "docker push registry.example.com/ml/lifecycle-pipeline:0.1.0"): (
        "needs a container registry"
    ),
    ("docs/deployment.md", "helm repo add dagster https://dagster-io.github.io/helm"): (
        "needs the network"
    ),
}


@dataclass
class Outcome:
    command: Command
    status: int
    output: str  # stdout and stderr, interleaved
    typed: str = field(default="")  # the text after substitution


def typed(command: Command, run: Run, context: Mapping[str, str]) -> str:
    """The command's text from the page with ``run``'s placeholders replaced."""
    text = command.text
    for substitution in run.substitutions:
        assert substitution.placeholder in text, (
            f"{command.where()}: placeholder {substitution.placeholder!r} is no longer in "
            f"{text!r}: update RUNS in tests/doc_commands.py"
        )
        text = text.replace(substitution.placeholder, substitution.value.format(**context))
    return text


def run_block(
    commands: list[Command], cwd: Path, env: Mapping[str, str], context: Mapping[str, str]
) -> list[Outcome]:
    """``commands`` (of one block, in order) in one bash, as the page's text with the
    placeholders replaced: each command's output and exit status, the shell going on after a
    failing one (the expected status is judged by the caller)."""
    script = ["exec 2>&1"]
    texts = []
    for index, command in enumerate(commands):
        text = typed(command, RUNS[command.page, command.key], context)
        texts.append(text)
        script += [
            f"printf '\\n@@begin {index}\\n'",
            f"{{ {text}\n}}",
            f"printf '\\n@@end {index} %d\\n' $?",
        ]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    outcomes = []
    for index, command in enumerate(commands):
        found = re.search(
            rf"\n@@begin {index}\n(.*?)\n@@end {index} (\d+)\n", done.stdout, re.DOTALL
        )
        assert found, f"{command.where()}: {texts[index]!r} did not finish:\n{done.stdout}"
        outcomes.append(Outcome(command, int(found[2]), found[1], texts[index]))
    return outcomes


def shown_output_pattern(shown: str) -> re.Pattern[str]:
    """A line pattern per shown output line: times and hex digests stand for any, columns for
    any run of blanks (the widths follow the values)."""
    lines = []
    for line in shown.splitlines():
        parts = []
        for word in line.split():
            if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.+-]+Z?", word):
                parts.append(r"\S+")
            elif re.fullmatch(r"[0-9a-f]{8,}", word):
                parts.append(r"[0-9a-f]+")
            elif re.fullmatch(r"-+", word):
                parts.append(r"-+")
            else:
                parts.append(re.escape(word))
        lines.append(r"^\s*" + r"\s+".join(parts) + r"\s*$")
    return re.compile(r"\n".join(lines), re.MULTILINE)


def check(outcome: Outcome, occurrence: int) -> None:
    """The outcome is what the page implies: the status, the output the page shows and the
    text ``RUNS`` names."""
    command = outcome.command
    run = RUNS[command.page, command.key]
    said = f"{command.where()}: `{outcome.typed}`"
    expected = run.exit_status(occurrence)
    assert outcome.status == expected, (
        f"{said} exited {outcome.status}, the page implies {expected}:\n{outcome.output}"
    )
    for text in run.output:
        assert text in outcome.output, f"{said}: no {text!r} in its output:\n{outcome.output}"
    if command.output:
        assert shown_output_pattern(command.output).search(outcome.output), (
            f"{said}: the page shows\n{command.output}\nbut it printed\n{outcome.output}"
        )


def commands_for(test: str, page: str) -> list[list[Command]]:
    """``page``'s commands that ``test`` runs, by block, in order."""
    blocks: dict[int, list[Command]] = {}
    for command in documented_commands(PROJECT_ROOT / page):
        run = RUNS.get((command.page, command.key))
        if command.marker is None and run is not None and run.test == test:
            blocks.setdefault(command.block, []).append(command)
    return list(blocks.values())


def run_and_check(
    test: str, page: str, cwd: Path, env: Mapping[str, str], context: Mapping[str, str]
) -> list[Outcome]:
    """Every command of ``page`` that ``test`` runs, checked; the outcomes, for more checks."""
    outcomes: list[Outcome] = []
    seen: dict[str, int] = {}
    for block in commands_for(test, page):
        for outcome in run_block(block, cwd, env, context):
            occurrence = seen.get(outcome.command.key, 0)
            seen[outcome.command.key] = occurrence + 1
            check(outcome, occurrence)
            outcomes.append(outcome)
    assert outcomes, f"{test} runs no command of {page}"
    return outcomes
