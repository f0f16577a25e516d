"""Write the example TrainJobs in deploy/k8s/trainjob/: what ftbot creates for two example runs with
the settings of deploy/k8s (tests/test_trainjob.py checks they are what the product renders today
and that they are valid against Kubeflow Trainer's published CRD).

    .venv/bin/python scripts/render_trainjobs.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "k8s" / "trainjob"
HEADER = (
    "# Rendered by scripts/render_trainjobs.py from templates/k8s/trainjob.json.j2: the TrainJob a\n"
    "# worker with FTBOT_MULTINODE=k8s creates for {what}.\n"
    "# Not applied by hand (the worker creates it through the API); shown for review.\n"
)
# file name → (what, run id, attempt, training overrides)
EXAMPLES: dict[str, tuple[str, int, int, dict[str, str]]] = {
    "trainjob-2-nodes-8-gpus.yaml": (
        "run 42 (nodes=2 procs=8: 16 GPUs)",
        42,
        0,
        {"nodes": "2", "procs": "8"},
    ),
    "trainjob-4-nodes-1-gpu-resumed.yaml": (
        "run 43's second try, resumed from its checkpoint (nodes=4 procs=1)",
        43,
        1,
        {"nodes": "4", "procs": "1"},
    ),
}


def render_example(file_name: str) -> dict[str, Any]:
    from runner.core.config import Settings
    from runner.core.trainconfig import TrainConfig
    from runner.jobs import multinode, trainjob

    _what, run_id, attempt, overrides = EXAMPLES[file_name]
    settings = Settings(ftbot_data_dir=Path("/data"), ftbot_multinode="k8s")
    config = TrainConfig.from_overrides(TrainConfig(base_model="Qwen/Qwen2.5-7B-Instruct"), overrides)
    spec = Path(f"/data/artifacts/ticket-router/.run-{run_id}.launch/spec.json")
    return trainjob.render(
        settings,
        name=multinode.trainjob_name(run_id, attempt),
        run_id=run_id,
        attempt=attempt,
        config=config,
        spec=spec,
        deadline_s=settings.ftbot_job_timeout,
    )


def main() -> int:
    import yaml

    OUT.mkdir(parents=True, exist_ok=True)
    for file_name, (what, *_rest) in EXAMPLES.items():
        text = yaml.safe_dump(render_example(file_name), sort_keys=False, width=100)
        (OUT / file_name).write_text(HEADER.format(what=what) + text)
        print(OUT / file_name)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
