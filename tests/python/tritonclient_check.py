"""The Open Inference Protocol routes as Triton's Python client sees them.

Run by tests/api/clients.rs against a live server: python tritonclient_check.py HOST:PORT.
Checks server live/ready, model metadata and readiness, inference of one row and of a batch
(JSON tensors: binary_data=False; classes, labels and class probabilities) against /predict's
answers for the same rows, the request id
echoed and on record in /audit, and a bad input refused with a 4xx whose message the client
shows, and the extensions inferlog does not serve (model configuration, statistics, repository
index) refused with a clean InferenceServerException. Prints one line per check; any failure
raises.
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

URL = sys.argv[1]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def http_json(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{URL}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read())


def infer(client, rows, request_id, model_version=""):
    x = np.array(rows, dtype=np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("prediction", binary_data=False),
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    return client.infer(
        "iris", [tensor], outputs=outputs, request_id=request_id, model_version=model_version
    )


client = httpclient.InferenceServerClient(URL)
assert client.is_server_live(), "server live"
assert client.is_server_ready(), "server ready"
print("live and ready")

server = client.get_server_metadata()
assert server["name"] == "inferlog", server
meta = client.get_model_metadata("iris")
assert meta["name"] == "iris", meta
assert meta["inputs"][0]["shape"] == [-1, 4], meta
assert [o["name"] for o in meta["outputs"]] == ["prediction", "label", "probabilities"], meta
assert meta["outputs"][2]["shape"] == [-1, 3] and meta["outputs"][2]["datatype"] == "FP64", meta
version = meta["versions"][0]
assert client.is_model_ready("iris"), "model ready"
assert client.is_model_ready("iris", version), "model ready at its version"
assert not client.is_model_ready("iris", "no-such-version"), "another version is not ready"
print("metadata and model readiness")

for rows, rid in [(ROWS[:1], "tc-one-row"), (ROWS, "tc-batch")]:
    result = infer(client, rows, rid, model_version=version)
    got = result.as_numpy("prediction").tolist()
    labels = result.as_numpy("label").tolist()
    probabilities = result.as_numpy("probabilities")
    want = http_json("POST", "/predict", {"features": rows})
    assert got == want["prediction"], (got, want)
    assert labels == want["labels"], (labels, want)
    # An [N, 3] FP64 tensor: /predict's probabilities, each row summing to 1, its largest
    # the class answered.
    assert probabilities.shape == (len(rows), 3), probabilities.shape
    assert probabilities.tolist() == want["probabilities"], (probabilities, want)
    assert np.allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-9), probabilities
    assert probabilities.argmax(axis=1).tolist() == got, (probabilities, got)
    response = result.get_response()
    assert response["id"] == rid, response
    assert response["model_name"] == "iris", response
    audited = http_json("GET", f"/audit?client_request_id={rid}")
    records = audited["records"] if isinstance(audited, dict) else audited
    assert len(records) == len(rows), audited
    assert sorted(r["item"] for r in records) == list(range(len(rows))), records
    assert all(r["status"] == 200 for r in records), records
    print(f"inferred {len(rows)} row(s) as /predict does, audited under {rid}")

# Outputs the client does not name as JSON (binary_data defaults to True) come back as JSON.
x = np.array(ROWS[:1], dtype=np.float32)
tensor = httpclient.InferInput("input", [1, 4], "FP32")
tensor.set_data_from_numpy(x, binary_data=False)
result = client.infer("iris", [tensor])
assert result.as_numpy("label").tolist() == [http_json("POST", "/predict", {"features": ROWS[:1]})["labels"][0]]
print("default outputs answered as JSON")

# Binary input tensors are refused with a message the client shows.
tensor = httpclient.InferInput("input", [1, 4], "FP32")
tensor.set_data_from_numpy(x, binary_data=True)
try:
    client.infer("iris", [tensor])
    raise AssertionError("binary data was accepted")
except InferenceServerException as e:
    assert e.status() in ("400", "415", "422"), e.status()
    assert "binary" in e.message(), e.message()
    print(f"binary data refused: {e}")

# A bad input (wrong shape): a 4xx whose message names the problem.
bad = httpclient.InferInput("input", [1, 3], "FP32")
bad.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), binary_data=False)
try:
    client.infer("iris", [bad], request_id="tc-bad")
    raise AssertionError("a [1, 3] tensor was accepted")
except InferenceServerException as e:
    assert e.status().startswith("4"), e.status()
    assert "shape" in e.message() and "[N, 4]" in e.message(), e.message()
    print(f"bad input refused: {e}")

try:
    client.get_model_metadata("nope")
    raise AssertionError("an unknown model has metadata")
except InferenceServerException as e:
    assert e.status() == "404" and "nope" in e.message(), str(e)
    print(f"unknown model: {e}")

# Extensions inferlog does not serve (model configuration, statistics, the repository): a
# clean InferenceServerException with the 404, which the client can only raise when the body
# is the protocol's {"error": "<string>"}.
for call in (
    lambda: client.get_model_config("iris"),
    lambda: client.get_inference_statistics("iris"),
    lambda: client.get_model_repository_index(),
):
    try:
        call()
        raise AssertionError("an extension inferlog does not serve answered")
    except InferenceServerException as e:
        assert e.status() == "404", str(e)
        assert "no route for" in e.message(), e.message()
print("model config, statistics and repository index: 404 in the protocol's error body")

print("tritonclient: all checks passed")
