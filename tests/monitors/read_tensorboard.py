"""Reads a TensorBoard log folder with TensorBoard's own EventAccumulator and prints what it
found as one JSON object: {"scalars": {tag: [[step, value], ...]}, "texts": {tag: [[step, text]]},
"files": [names]}. Used by tests/monitors.rs on lmf's `report_to: tensorboard` output.

usage: python read_tensorboard.py LOGDIR
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util


def main(logdir):
    ea = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    scalars = {
        tag: [[e.step, e.value] for e in ea.Scalars(tag)] for tag in tags.get("scalars", [])
    }
    texts = {}
    for tag in tags.get("tensors", []):
        out = []
        for e in ea.Tensors(tag):
            arr = tensor_util.make_ndarray(e.tensor_proto)
            out.append([e.step, arr.reshape(-1)[0].decode("utf-8")])
        texts[tag] = out
    files = sorted(f for f in os.listdir(logdir) if f.startswith("events.out.tfevents."))
    print(json.dumps({"scalars": scalars, "texts": texts, "files": files}))


if __name__ == "__main__":
    main(sys.argv[1])
