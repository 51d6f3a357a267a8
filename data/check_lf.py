"""Encodes dpo_demo and kto_demo with LLaMA-Factory 0.9.5's own `get_dataset` and prints what
trainers/tests/data_demo_pref.rs pins for lmf: per stage and cutoff_len, the rows kept and the
token totals (every row must keep a non-empty response).

    ~/.cache/lmf-reference-venv/bin/python data/check_lf.py 2>/dev/null

Model: tests/fixtures/hf/train/models/llama (template llama3). Offline; ~15 s.
"""

import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODEL = os.path.join(ROOT, "tests", "fixtures", "hf", "train", "models", "llama")


def labelled(ids):
    return sum(1 for x in ids if x != -100)


def encode(stage, dataset, cutoff):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    out = tempfile.mkdtemp(prefix="lmf-check-")
    args = {"model_name_or_path": MODEL, "stage": stage, "do_train": True,
            "finetuning_type": "lora", "dataset": dataset, "dataset_dir": os.path.join(ROOT, "data"),
            "template": "llama3", "cutoff_len": cutoff, "output_dir": out, "overwrite_cache": True,
            "report_to": "none", "preprocessing_num_workers": None}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tok = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
    # LF's dpo workflow asks for stage rm's datasets
    module = get_dataset(template, model_args, data_args, training_args,
                         stage="rm" if stage == "dpo" else stage, **tok)
    shutil.rmtree(out, ignore_errors=True)
    return list(module["train_dataset"])


def main():
    # LF logs and prints a decoded row on stdout: send all of it to stderr, keep stdout for the
    # result
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    cache = tempfile.mkdtemp(prefix="lmf-check-cache-")
    os.environ["HF_DATASETS_CACHE"] = cache
    res = {}
    for stage, dataset in (("rm", "dpo_demo"), ("dpo", "dpo_demo"), ("kto", "kto_demo")):
        for cutoff in (128, 1024):
            rows = encode(stage, dataset, cutoff)
            if stage == "kto":
                lab = [labelled(r["labels"]) for r in rows]
                kl = [labelled(r["kl_labels"]) for r in rows]
                assert min(lab) > 0 and min(kl) > 0, f"{stage}: a row with no response"
                res[f"{stage}_{cutoff}"] = {
                    "rows": len(rows), "desirable": sum(r["kto_tags"] for r in rows),
                    "tokens": sum(len(r["input_ids"]) for r in rows), "labels": sum(lab),
                    "kl_tokens": sum(len(r["kl_input_ids"]) for r in rows), "kl_labels": sum(kl)}
            else:
                c = [labelled(r["chosen_labels"]) for r in rows]
                j = [labelled(r["rejected_labels"]) for r in rows]
                assert min(c) > 0 and min(j) > 0, f"{stage}: a pair with no response"
                res[f"{stage}_{cutoff}"] = {
                    "rows": len(rows),
                    "chosen_tokens": sum(len(r["chosen_input_ids"]) for r in rows),
                    "chosen_labels": sum(c),
                    "rejected_tokens": sum(len(r["rejected_input_ids"]) for r in rows),
                    "rejected_labels": sum(j)}
    shutil.rmtree(cache, ignore_errors=True)
    sys.stdout.flush()
    with os.fdopen(result_fd, "w") as out:
        json.dump(res, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
