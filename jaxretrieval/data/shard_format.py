"""Prepared training data: TFRecord shards plus a manifest, written once by `jaxretrieval prepare` and streamed by
every host of a run, so a dataset larger than RAM trains with memory that does not grow with it.

Layout of a prepared directory:
    dataset.json                  the manifest: what the shards hold (`content`), their record counts, how the
                                  texts were tokenized (fingerprint, max lengths, pad ids), the source, a digest
    train-00000-of-00016.tfrecord one tf.train.Example per record
    sample.jsonl                  a uniform sample of the texts ({"text"} per line), for what needs texts and not
                                  all of them (head_init: principal)

Record i of the source goes to shard i mod num_shards, and shard s belongs to process s mod process_count (the
round-robin split `tfds.split_for_jax_process` makes, at shard granularity), so a host reads only its own files.

Contents (`content`), and the features of one record:
- "pair_tokens" (dense, ColBERT): query_id int64[1], query_tokens int64[Lq]; for kind in (pos, neg): {kind}_ids
  int64[n] (text ids), {kind}_lengths int64[n], {kind}_tokens int64[sum of lengths]; with scores,
  pos_scores / neg_scores float[n]; neg_random int64[1] = 1 when the negatives were drawn at random by `prepare`
  (the record had none of its own).
- "pair_texts" (reranker: query and document are tokenized together, as a pair, per batch): as pair_tokens with
  query_text bytes[1], pos_text / neg_text bytes[n] in place of the token features.
- "text_tokens" (distillation): text_id int64[1], tokens int64[L], teacher{k} float[D_k] (the rows of the teacher
  vector files).
Text ids are 64-bit hashes of the text (data/text_ids.py): dataset-wide identities without a table in RAM.
"""

from __future__ import annotations

import hashlib
import json
import os

from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, upath

MANIFEST = "dataset.json"
SAMPLE = "sample.jsonl"
FORMAT = "jaxretrieval.prepared/2"
CONTENTS = ("pair_tokens", "pair_texts", "text_tokens")


def is_prepared(path: str | os.PathLike) -> bool:
    return (upath(path) / MANIFEST).is_file()


def require_unprompted(path, prompt: str, min_score: float | None) -> None:
    """A prepared directory's queries already carry what `prepare` applied (its config's data.prompt, min_score):
    setting them again for training would be ignored, so it is an error."""
    for key, value in (("prompt", prompt), ("min_score", min_score)):
        if value not in ("", None):
            raise InputError(f"data.{key} is applied by `jaxretrieval prepare`; this directory is prepared already "
                             f"(prepare it again with {key} set, or leave {key} unset)", path, field=key)


def tokenizer_fingerprint(tokenizer: TextTokenizer, **settings) -> str:
    """Changes whenever the token ids of a text could change: vocabulary, normalizer, prompts, lower-casing, and
    the caller's `settings` (ColBERT's markers and lengths)."""
    backend = json.loads(tokenizer.tokenizer.backend_tokenizer.to_str())
    for transient in ("truncation", "padding"):  # set per call by transformers, not part of the vocabulary
        backend.pop(transient, None)
    state = {"tokenizer": backend, "prompts": tokenizer.prompts, "lower": tokenizer.do_lower_case, **settings}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(path: str | os.PathLike) -> dict:
    f = upath(path) / MANIFEST
    try:
        manifest = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read prepared-data manifest: {e}", f) from None
    if manifest.get("format") == "jaxretrieval.prepared/1":
        raise InputError("prepared by an older jaxretrieval (whole-dataset text tables); run `jaxretrieval prepare` "
                         "again", f, field="format")
    if manifest.get("format") != FORMAT:
        raise InputError(f"unsupported format {manifest.get('format')!r} (expected {FORMAT})", f, field="format")
    return manifest


def shards_of_process(num_shards: int, process_index: int, process_count: int) -> list[int]:
    return list(range(process_index, num_shards, process_count))


def check_prepared(path: str | os.PathLike, content: str, task: str, fingerprint: str | None,
                   settings: dict[str, int], global_batch: int, process_count: int, count: str = "examples"
                   ) -> tuple[dict, int]:
    """(manifest, steps per epoch) after checking the prepared data fits this run: the content the task reads,
    the same tokenizer and lengths (`settings`: manifest key -> the value the config implies), enough shards for
    every process, and at least one local batch on each. Every process runs the same number of steps per epoch,
    the minimum over processes of its records (`count`: "examples", or "with_negatives" for tasks that skip
    records without negatives) over its batch, read from the manifest without opening another host's shards."""
    where = upath(path) / MANIFEST
    manifest = read_manifest(path)
    if manifest["content"] != content:
        raise InputError(f"prepared for another task ({manifest['content']}; task {task} reads {content}): prepare "
                         f"again with this config", where, field="content")
    if fingerprint is not None and manifest["tokenizer_fingerprint"] != fingerprint:
        raise InputError("prepared with a different tokenizer or prompts than model.path; prepare again", where,
                         field="tokenizer_fingerprint")
    for key, want in settings.items():
        if manifest[key] != want:
            raise InputError(f"prepared with {key} {manifest[key]} but the config asks for {want} (prepare again, "
                             f"or change the config to match)", where, field=key)
    shards = manifest["shards"]
    if len(shards) < process_count:
        raise InputError(f"prepared with {len(shards)} shards, fewer than the {process_count} processes; prepare "
                         f"again with --shards >= {process_count}", where, field="shards")
    if global_batch % process_count:
        raise InputError(f"batch_size {global_batch} is not divisible by {process_count} processes", "config",
                         field="batch_size")
    local_batch = global_batch // process_count
    per_process = [sum(shards[s][count] for s in shards_of_process(len(shards), p, process_count))
                   for p in range(process_count)]
    steps = min(per_process) // local_batch
    if steps < 1:
        what = "records with negatives" if count == "with_negatives" else "records"
        raise InputError(f"a process holds only {min(per_process)} {what}, fewer than its batch of {local_batch}",
                         where, field="batch_size")
    return manifest, steps


def shard_files(path: str | os.PathLike, manifest: dict, process_index: int, process_count: int) -> list[UPath]:
    """This process's shard files, each checked to exist (a missing one is named before any step)."""
    root = upath(path)
    files = []
    for s in shards_of_process(len(manifest["shards"]), process_index, process_count):
        file = root / manifest["shards"][s]["file"]
        if not file.is_file():
            raise InputError("shard listed in the manifest is missing", file)
        files.append(file)
    return files


def identity(path: str | os.PathLike, manifest: dict) -> dict:
    """What a checkpoint must have been trained on to be resumed: the same on every process."""
    return {"examples": manifest["examples"], "digest": manifest["digest"], "source": str(upath(path)),
            "tokenizer": manifest.get("tokenizer_fingerprint")}
