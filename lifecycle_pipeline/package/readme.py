"""The package's README.md: what the package is, and the three commands a user runs.

Written from the manifest being built, so every figure in it is the package's own and the
commands name its Python; the README is itself a listed, signed file.
"""

from __future__ import annotations

import json
from typing import Any

from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.package import runtime

README_FILE = "README.md"


def _columns(schema: bytes) -> str:
    return ", ".join(f"`{c['name']}` ({c['type']})" for c in json.loads(schema)["columns"])


def _outputs(schema: bytes) -> str:
    return ", ".join(f"`{c['name']}`" for c in json.loads(schema)["columns"])


def render(manifest: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """The README of one package; ``files``: every other file except the manifest."""
    env = manifest["environment"]
    name, partition = manifest["declaration"]["name"], manifest["partition"]
    python = f"python{env['python_requires'][2:-2]}"
    venv = f"../{name}-{partition}-env"
    requirements = runtime.REQUIREMENTS_FILE
    outside = env.get("modules_outside_requirements") or []
    lines = [
        f"# {name} model, data version {partition}: deployment package",
        "",
        f"A {manifest['task']} model ({manifest['model']['estimator']}) declared as `{name}` and "
        f"trained on data version `{partition}`. Package format `{manifest['format']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| model fingerprint | `{manifest['model']['fingerprint']}` |",
        f"| golden prediction digest ({manifest['golden']['rows']} rows) "
        f"| `{manifest['golden']['prediction_digest']}` |",
        f"| model.skops sha256 | `{sha256_bytes(files['model.skops'])}` |",
        f"| declaration sha256 | `{manifest['declaration']['sha256']}` |",
        f"| data (DVC md5) | `{manifest['lineage']['data_md5']}` |",
        f"| code commit | `{manifest['lineage']['code'].get('commit')}` |",
        f"| project lock (uv.lock sha256) | `{env['lock_sha256']}` |",
        f"| Python, platform | {env['implementation']} {env['python']} on {env['platform']} "
        f"(wheels: {', '.join(f'`{p}`' for p in env['wheel_platforms']) or 'pure Python'}) |",
        "",
        "`manifest.json` lists every file's sha256; `model.sig` signs every file in this folder.",
        "",
        "## Create the environment",
        "",
        "Outside this folder: the signature covers every file in it, so keep environments and "
        "predictions elsewhere.",
        "",
        "```sh",
        f"{python} -m venv {venv}",
        f"{venv}/bin/pip install --require-hashes -r {requirements}",
        "```",
        "",
        f"`{requirements}` pins the {len(env['requirements'])} distributions `predict.py` and its "
        f"model import, at the versions the project's lock resolves for Python "
        f"{env['python_requires'][2:]}, with the lock's artifact hashes: pip installs those "
        "artifacts or nothing. Other Python versions get other pins from the lock; use "
        f"{python}. `uv.lock` is the whole project's lock, kept for audit (its sha256 is the "
        "environment in the model's lineage); do not install from it.",
    ]
    if outside:
        lines += [
            "",
            f"The model also holds types from {', '.join(f'`{m}`' for m in outside)}, which no "
            "installed distribution provided when it was packaged: put that code on "
            "`PYTHONPATH` beside the environment.",
        ]
    lines += [
        "",
        "## Verify",
        "",
        "```sh",
        f"{venv}/bin/python predict.py --verify",
        "```",
        "",
        "checks every file against `manifest.json`, the environment against "
        f"`{requirements}`, that the model loads with its reviewed types only, and that the "
        "golden inputs reproduce the prediction digest above and `golden_outputs.parquet` bit "
        "for bit. The signature needs the signer's public key: `lifecycle verify PACKAGE "
        "--public-key KEY.pub` where the project is installed; without it, with "
        f"`{manifest['signing']['tool']}` installed in another environment:",
        "",
        "```sh",
        "model_signing verify key . --signature model.sig --public_key KEY.pub "
        "--ignore-paths model.sig",
        "```",
        "",
        "## Predict",
        "",
        "```sh",
        f"{venv}/bin/python predict.py input.csv predictions.csv",
        "```",
        "",
        f"Input (CSV or Parquet): {_columns(files['input_schema.json'])}. Output (CSV or "
        f"Parquet, one row per input row, in order): {_outputs(files['output_schema.json'])}. "
        "Rows that break the input schema are refused with exit status 2, naming row and "
        "column; `--out-of-range flag|reject` overrides the declared policy for values outside "
        f"the training range (`{json.loads(files['input_schema.json'])['out_of_range']}` here).",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
