"""Importing bench changes nothing in the importing process; nothing is fetched from a hub:
the hub is switched off only in the processes the harness starts, and every load in the
user's process is local-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from bench.run import offline
from bench.run.case_process import ProcessLauncher

HUB_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _python(code: str, tmp_path) -> dict:
    """Run ``code`` in a fresh interpreter with the hub switches unset and an empty hub
    cache (a cached model must not stand in for a local folder); it prints one JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARS}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_bench_leaves_the_environment_alone(tmp_path):
    changed = _python(
        """
        import json, os
        before = dict(os.environ)
        import bench, bench.models.hf, bench.cli, bench.pytest_plugin, bench.run.suite_driver
        after = dict(os.environ)
        print(json.dumps({k: [before.get(k), after.get(k)] for k in before.keys() | after.keys()
                          if before.get(k) != after.get(k)}))
        """,
        tmp_path,
    )
    assert changed == {}


def _probe(conn) -> None:
    """Runs in a case process: what its environment and huggingface_hub say of the hub."""
    import huggingface_hub.constants

    conn.send(
        {
            "env": {k: os.environ.get(k) for k in HUB_VARS},
            "hub_offline": huggingface_hub.constants.HF_HUB_OFFLINE,
        }
    )
    conn.close()


def test_a_case_process_runs_with_the_hub_off_and_its_parent_keeps_its_environment():
    before = {k: os.environ.get(k) for k in HUB_VARS}
    # the launcher's own fork server, with transformers preloaded as for an hf model
    launcher = ProcessLauncher(preload=("transformers",))
    try:
        launcher.start()
        ctx = launcher._ctx
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_probe, args=(send,))
        proc.start()
        send.close()
        assert recv.poll(120), "the case process sent nothing"
        seen = recv.recv()
        proc.join(30)
    finally:
        launcher.close()
    assert seen == {"env": offline.OFFLINE_ENV, "hub_offline": True}
    assert {k: os.environ.get(k) for k in HUB_VARS} == before


def test_servers_the_harness_starts_get_the_hub_switched_off():
    env = offline.child_env({"PATH": "/bin", "HF_HUB_OFFLINE": "0"})
    assert env == {"PATH": "/bin", **offline.OFFLINE_ENV}


def test_a_checkpoint_that_is_not_on_disk_is_refused_never_fetched(tmp_path):
    # In a process whose hub is on (no HF_HUB_OFFLINE), with every connection recorded.
    seen = _python(
        """
        import json, socket
        tried = []
        def connect(self, address, *a, **k):
            tried.append(str(address))
            raise OSError("network blocked by the test")
        socket.socket.connect = connect
        socket.create_connection = lambda address, *a, **k: connect(None, address)

        from pydantic import ValidationError
        from bench.models.hf import LocalCheckpoint, build_local
        out = {}
        try:
            LocalCheckpoint(path="openai-community/gpt2")
        except ValidationError as e:
            out["validation"] = str(e)
        try:  # past validation (a folder removed since): the load itself stays local
            build_local(LocalCheckpoint.model_construct(path="openai-community/gpt2"), None)
        except (OSError, ValueError) as e:
            out["load"] = str(e)
        out["tried_missing"] = tried[:]

        # A real local folder, validated and loaded in this process, hub on: all from disk.
        from transformers import GPT2Config, GPT2LMHeadModel
        config = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=64)
        GPT2LMHeadModel(config).save_pretrained(FOLDER, safe_serialization=True)
        model = build_local(LocalCheckpoint(path=FOLDER), None)
        out["loaded"] = model.bench_info["checkpoint"]
        out["tried"] = tried
        print(json.dumps(out))
        """.replace("FOLDER", repr(str(tmp_path / "ckpt"))),
        tmp_path,
    )
    assert "no such checkpoint folder: openai-community/gpt2" in seen["validation"]
    assert seen["load"] == "no such checkpoint folder: openai-community/gpt2"
    assert seen["tried_missing"] == []
    assert seen["loaded"] == str(tmp_path / "ckpt")
    assert seen["tried"] == []
