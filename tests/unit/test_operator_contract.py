"""The operator's side of the pod contract agrees with the inference server's Settings."""

from __future__ import annotations

import pathlib

import yaml

from voice_inference import metrics as metrics_mod
from voice_inference import serving
from voice_inference import settings as inference_settings
from voice_operator import contract, spec
from voice_operator.builders import checkpoint, common, deployment

FIELDS = set(inference_settings.Settings.model_fields)
REPO = pathlib.Path(__file__).resolve().parents[2]


def _everything_on() -> common.Context:
    # A spec that makes the builder render every VOICE_* variable it knows.
    s = spec.VoiceServiceSpec.model_validate({
        "engine": {"streamFrames": 8, "referenceCacheSize": 16, "cpuThreads": 4, "maxBatchSize": 32},
        "checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}},
        "apiKeySecret": {"name": "keys", "key": "keys"},
        "cors": {"allowOrigins": ["https://a.example", "https://b.example"]},
        "references": {"storage": "huggingface", "huggingface": {
            "repo": "acme/voices", "endpoint": "https://hub.example", "tokenSecret": {"name": "hf", "key": "token"}}},
    })
    return common.Context("svc", "ns", "uid", s)


def _s3_voices() -> common.Context:
    s = spec.VoiceServiceSpec.model_validate({
        "engine": {"provider": "mock"},
        "references": {"storage": "s3", "s3": {"bucket": "voices", "endpoint": "http://minio:9000", "region": "eu-west-1"}},
    })
    return common.Context("svc", "ns", "uid", s)


def _rendered_voice_env(ctx: common.Context) -> dict[str, str]:
    plan = checkpoint.plan(ctx)
    dep = deployment.deployment(ctx, plan, plan.folder or None)
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e.get("value", "") for e in env if e["name"].startswith(contract.ENV_PREFIX)}


def test_every_contract_name_is_a_settings_field() -> None:
    for name in contract.ALL_ENV:
        field = name.removeprefix(contract.ENV_PREFIX).lower()
        assert field in FIELDS, f"{name} is not a field of voice_inference.settings.Settings"


def test_every_rendered_voice_variable_is_a_settings_field() -> None:
    for ctx in (_everything_on(), _s3_voices()):
        for name in _rendered_voice_env(ctx):
            assert name.removeprefix("VOICE_").lower() in FIELDS, f"the operator renders {name}, which Settings ignores"
            assert name in contract.ALL_ENV, f"{name} is rendered but not listed in contract.ALL_ENV"


def test_rendered_values_parse_as_settings(tmp_path, monkeypatch) -> None:
    # The inference server accepts what the operator renders (files replaced by real ones here).
    env = _rendered_voice_env(_everything_on())
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    token = tmp_path / "token"
    token.write_text("hf_x\n")
    env[contract.API_KEYS_FILE] = str(keys)
    env[contract.REFERENCE_HF_TOKEN_FILE] = str(token)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parsed = inference_settings.Settings()
    assert parsed.port == contract.PORT
    assert parsed.tts_provider == "s1_mini"
    assert parsed.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert parsed.reference_hf_repo == "acme/voices"
    assert parsed.max_batch_size == 32


def test_the_example_autoscaler_scales_on_a_metric_the_server_exports() -> None:
    # A Pods metric is the server's own Prometheus metric, carried by a metrics adapter.
    manifest = yaml.safe_load((REPO / "examples" / "voiceservice-production.yaml").read_text())
    metric = manifest["spec"]["autoscaling"]["target"]["podMetric"]["name"]
    assert metric == "voice_batch_slot_occupancy"
    assert metrics_mod.Metrics().registry.get_sample_value(metric) == 0.0


def test_probe_paths_and_port() -> None:
    ctx = _everything_on()
    container = deployment.deployment(ctx, checkpoint.plan(ctx), "rev-x")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == contract.READY_PATH == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == contract.LIVE_PATH == "/health/live"
    assert container["ports"][0]["containerPort"] == contract.PORT == inference_settings.Settings.model_fields["port"].default


def test_the_shutdown_fits_in_the_grace_period(monkeypatch) -> None:
    # Serve-on delay + drain deadline + the runner's margin: the process exits 0 before the kubelet kills it.
    ctx = _everything_on()
    pod = deployment.deployment(ctx, checkpoint.plan(ctx), "rev-x")["spec"]["template"]["spec"]
    env = _rendered_voice_env(ctx)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(contract.API_KEYS_FILE)  # a mounted file in the pod; not needed for these fields
    monkeypatch.delenv(contract.REFERENCE_HF_TOKEN_FILE)
    parsed = inference_settings.Settings()
    assert parsed.shutdown_delay_seconds == deployment.SHUTDOWN_DELAY_SECONDS > 0
    assert "lifecycle" not in pod["containers"][0], "the server itself serves on after SIGTERM: no preStop pause"
    total = parsed.shutdown_delay_seconds + parsed.drain_seconds + serving.SHUTDOWN_MARGIN_SECONDS
    assert total < pod["terminationGracePeriodSeconds"]
