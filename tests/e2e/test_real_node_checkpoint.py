"""The checkpoint path end to end, on the real node (tests/cluster/node.py): a VoiceService
whose checkpoint is in S3 gets a claim and a fetch Job from the operator; the Job's pod runs
the operator image and downloads the tiny S1 checkpoint from moto's S3 server into the claim;
then the inference pod loads it from the claim with the S1 engine on the CPU, turns Ready
through its real probes, and speaks through its Service to a client pod.

Storage is a local PersistentVolume over a folder of this machine (tests/e2e/real_node_storage.py):
the kubelet hands it to the pods' fsGroup, so the Job, as uid 10001, can write it.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

import httpx
import pytest

from tests.cluster import client, node
from tests.e2e.operator_fixtures import OperatorProcess, condition, exists, voiceservice, wait_condition
from tests.e2e.real_node_fixtures import ON_REAL_NODE, run_client
from tests.e2e.real_node_storage import LocalVolume, upload_folder, volume_phase
from tests.storage_fixtures import REGION, MotoS3

pytestmark = pytest.mark.e2e

NAME = "speech"
CLAIM = f"{NAME}-checkpoints"  # voice_operator.naming.checkpoint_claim
MARKER = ".voice-checkpoint.json"  # voice_operator.fetch.MARKER

# Decodes the WAV in the pod (the operator image has Python's standard library only).
SPEAK = """
import array, io, json, urllib.request, wave
body = json.dumps({{"text": "Hello from the checkpoint.", "format": "wav", "seed": 1, "max_new_tokens": 48}}).encode()
request = urllib.request.Request("{url}/v1/tts", data=body, headers={{"Content-Type": "application/json"}})
with urllib.request.urlopen(request, timeout=240) as response:
    data, status, kind = response.read(), response.status, response.headers["Content-Type"]
with wave.open(io.BytesIO(data)) as audio:
    width, rate, frames = audio.getsampwidth(), audio.getframerate(), audio.readframes(audio.getnframes())
samples = array.array("h", frames) if width == 2 else array.array("b")
print(json.dumps({{"status": status, "type": kind, "bytes": len(data), "magic": data[:4].decode(), "width": width,
                  "rate": rate, "samples": len(samples), "peak": max(map(abs, samples), default=0)}}))
"""


def s3_voiceservice(uri: str, endpoint: str, storage_class: str, operator_image: str, inference_image: str) -> dict:
    return voiceservice(
        NAME,
        engine={"provider": "s1_mini", "device": "auto", "cpuThreads": 2},
        image=inference_image,
        imagePullPolicy="Never",
        nodeSelector=dict(ON_REAL_NODE),
        checkpoint={
            "source": {"s3": {"uri": uri, "endpoint": endpoint, "region": REGION, "credentialsSecret": {"name": "s3-checkpoint"}}},
            "storage": {"size": "1Gi", "storageClassName": storage_class},
            "fetchImage": operator_image,
        },
    )


def test_fetch_job_fills_the_claim_from_s3_and_s1_serves_from_it(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode,
    node_s3: MotoS3, local_volumes: Callable[..., LocalVolume], image_checkpoint: pathlib.Path,
    operator_image: str, inference_image: str,
) -> None:  # fmt: skip
    bucket = node_s3.create_bucket()
    files = upload_folder(node_s3, image_checkpoint, bucket, "models/s1-tiny")
    assert {"model.pth", "codec.pth", "config.json", "tokenizer.tiktoken", "special_tokens.json"} <= set(files)
    cluster.apply({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-checkpoint"},
        "stringData": {"AWS_ACCESS_KEY_ID": node_s3.access_key, "AWS_SECRET_ACCESS_KEY": node_s3.secret_key},
    }, namespace)  # fmt: skip
    volume = local_volumes(CLAIM)
    uri = f"s3://{bucket}/models/s1-tiny"
    cluster.apply(s3_voiceservice(uri, node_s3.endpoint_url, volume.storage_class, operator_image, inference_image), namespace)
    applied = time.monotonic()

    # The fetch Job: its pod ran the operator image on the real node and filled the claim.
    vs = wait_condition(cluster, namespace, NAME, "CheckpointReady", "True", "Fetched", timeout=240)
    print(f"checkpoint fetched {time.monotonic() - applied:.1f}s after the VoiceService was applied")
    checkpoint = vs["status"]["checkpoint"]
    assert checkpoint["claimName"] == CLAIM and checkpoint["source"] == uri
    job = cluster.kubectl_json("get", "job", checkpoint["jobName"], "-n", namespace)
    assert job["status"].get("succeeded") == 1 and not job["status"].get("failed"), job["status"]
    [fetch_pod] = cluster.pods(namespace, f"job-name={checkpoint['jobName']}")
    assert fetch_pod["spec"]["nodeName"] == node.NODE_NAME and fetch_pod["status"]["phase"] == "Succeeded"
    [fetch_container] = fetch_pod["spec"]["containers"]
    assert fetch_container["image"] == operator_image and fetch_container["command"] == ["voice-fetch-checkpoint"]
    [fetch] = fetch_pod["status"]["containerStatuses"]
    assert fetch["state"]["terminated"]["exitCode"] == 0
    reported = json.loads(fetch["state"]["terminated"]["message"])
    assert reported["files"] == len(files) and reported["revision"].startswith("etag-")
    assert checkpoint["revision"] == reported["revision"]  # the status carries what the Job reported

    claim = cluster.kubectl_json("get", "pvc", CLAIM, "-n", namespace)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == volume.name
    assert volume.path.stat().st_gid == 10001  # the kubelet handed the folder to the Job's fsGroup
    [folder] = [p for p in volume.path.iterdir() if p.name.startswith("rev-")]
    for relative, data in files.items():
        fetched = folder / relative
        assert fetched.read_bytes() == data, relative
        assert fetched.stat().st_uid == 10001  # written by the Job's user, into a folder root made
    assert json.loads((folder / MARKER).read_text())["revision"] == reported["revision"]

    # The inference pod loads that folder from the claim (read-only) and turns Ready through its probes.
    vs = wait_condition(cluster, namespace, NAME, "Ready", "True", "Available", timeout=600)
    print(f"Ready (S1 loaded from the claim) {time.monotonic() - applied:.1f}s after the VoiceService was applied")
    assert condition(vs, "Degraded").get("status") == "False" and vs["status"]["replicaSummary"] == "1/1"
    [pod] = cluster.pods(namespace, f"voice-service.io/service={NAME},app.kubernetes.io/component=inference")
    assert pod["spec"]["nodeName"] == node.NODE_NAME
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VOICE_S1_CHECKPOINT_PATH"] == f"/checkpoints/{folder.name}" and env["VOICE_S1_DEVICE"] == "auto"
    [claim_volume] = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claim_volume["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0
    ready = httpx.get(f"http://{pod['status']['podIP']}:8080/health/ready", timeout=30)  # this machine is the node
    assert ready.status_code == 200 and ready.json()["engine"] == "s1_mini", ready.text

    # Speech through the Service's cluster IP, from a pod, decoded there.
    service = cluster.kubectl_json("get", "service", NAME, "-n", namespace)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    heard = json.loads(run_client(cluster, namespace, "speak", operator_image, SPEAK.format(url=url), timeout=300).strip().splitlines()[-1])
    assert (heard["status"], heard["type"], heard["magic"], heard["width"]) == (200, "audio/wav", "RIFF", 2), heard
    assert heard["rate"] > 0 and heard["samples"] > 0 and heard["peak"] > 0, heard  # sound, not silence
    print(f"speech through the Service: {heard}")

    # Deleting the VoiceService deletes its claim; the volume (Retain) keeps the files.
    cluster.kubectl("delete", "voiceservice", NAME, "-n", namespace)
    cluster.wait_for(f"claim {CLAIM} deleted", lambda: not exists(cluster, namespace, "pvc", CLAIM), timeout=180)
    cluster.wait_for(f"volume {volume.name} released", lambda: volume_phase(cluster, volume.name) == "Released", timeout=60)
    assert (folder / "model.pth").is_file()
