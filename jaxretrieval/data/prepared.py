"""Training data prepared once into TFRecord shards, so that a large dataset is tokenized a single time and
each host of a multi-host run reads only its own shards.

Layout of a prepared directory:
    dataset.json                  manifest: shards and their example counts, text-table sizes, max lengths,
                                  tokenizer fingerprint, source
    train-00000-of-00016.tfrecord one tf.train.Example per training example (tokens, not text)

Example i of the source goes to shard i mod num_shards and shard s belongs to process s mod process_count (the
round-robin split `tfds.split_for_jax_process` makes, at shard granularity). A process plans its own epochs
(shuffle, positive and negative sampling) with a seed stream of its own, and every process runs the same number
of steps per epoch (the minimum over processes, from the manifest's counts, without reading the other shards).
Padding is fixed at the prepared max lengths: the processes never agree on per-step bucket lengths, so they must
all build the same shapes by construction. Text ids stored in the records are dataset-wide, which keeps the
loss's duplicate-document masking correct across hosts.

A process loads its shards into memory as token tables (int32), about 1/process_count of the tokenized data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from jaxretrieval.data.pipeline import DenseBatchSource, TokenTable
from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.data.train_pairs import TrainPairs
from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, atomic_directory, local_copy, require_free_output, upath

MANIFEST = "dataset.json"
FORMAT = "jaxretrieval.prepared/1"


def is_prepared(path: str | os.PathLike) -> bool:
    return (upath(path) / MANIFEST).is_file()


def tokenizer_fingerprint(tokenizer: TextTokenizer) -> str:
    """Changes whenever the token ids of a text could change: vocabulary, normalizer, prompts, lower-casing."""
    backend = json.loads(tokenizer.tokenizer.backend_tokenizer.to_str())
    for transient in ("truncation", "padding"):  # set per call by transformers, not part of the vocabulary
        backend.pop(transient, None)
    state = {"tokenizer": backend, "prompts": tokenizer.prompts, "lower": tokenizer.do_lower_case}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _int_feature(values):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _doc_features(table: TokenTable, ids: np.ndarray, prefix: str) -> dict:
    seqs = [table.flat[table.offsets[i]:table.offsets[i + 1]] for i in ids]
    flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int32)
    return {f"{prefix}_ids": _int_feature(ids), f"{prefix}_lengths": _int_feature([len(s) for s in seqs]),
            f"{prefix}_tokens": _int_feature(flat)}


def prepare_shards(pairs: TrainPairs, tokenizer: TextTokenizer, out_dir: str | os.PathLike, num_shards: int,
                   max_query_length: int, max_doc_length: int, overwrite: bool = False) -> dict:
    """Tokenize every text once and write the shards plus manifest. Written to a temporary directory and moved
    into `out_dir` (local or gs://) at the end, so an interrupted run leaves nothing that looks complete."""
    import tensorflow as tf

    if num_shards < 1:
        raise InputError(f"num_shards must be >= 1, got {num_shards}", out_dir, field="shards")
    out = require_free_output(out_dir, overwrite)
    q_len, d_len = min(max_query_length, tokenizer.max_length), min(max_doc_length, tokenizer.max_length)
    queries = TokenTable.build(tokenizer, pairs.query_texts, "query", q_len, 1)
    docs = TokenTable.build(tokenizer, pairs.doc_texts, "doc", d_len, 1)
    with atomic_directory(out) as tmp:
        names = [f"train-{s:05d}-of-{num_shards:05d}.tfrecord" for s in range(num_shards)]
        counts = [0] * num_shards
        writers = [tf.io.TFRecordWriter(str(tmp / n)) for n in names]
        for i in range(len(pairs)):
            q = int(pairs.query[i])
            features = {"query_id": _int_feature([q]),
                        "query_tokens": _int_feature(queries.flat[queries.offsets[q]:queries.offsets[q + 1]]),
                        **_doc_features(docs, pairs.positives[i], "pos"),
                        **_doc_features(docs, pairs.negatives[i], "neg")}
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writers[i % num_shards].write(example.SerializeToString())
            counts[i % num_shards] += 1
        for w in writers:
            w.close()
        manifest = {"format": FORMAT, "source": pairs.source, "examples": len(pairs),
                    "num_queries": len(pairs.query_texts), "num_docs": len(pairs.doc_texts),
                    "max_query_length": q_len, "max_doc_length": d_len, "pad_id": tokenizer.pad_id,
                    "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
                    "shards": [{"file": n, "examples": c} for n, c in zip(names, counts)]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    f = upath(path) / MANIFEST
    try:
        manifest = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read prepared-data manifest: {e}", f) from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"unsupported format {manifest.get('format')!r} (expected {FORMAT})", f, field="format")
    return manifest


def _check_shard_count(manifest: dict, where: UPath, process_count: int) -> None:
    if len(manifest["shards"]) < process_count:
        raise InputError(f"prepared with {len(manifest['shards'])} shards, fewer than the {process_count} "
                         f"processes; prepare again with --shards >= {process_count}", where, field="shards")


def shards_of_process(num_shards: int, process_index: int, process_count: int) -> list[int]:
    return list(range(process_index, num_shards, process_count))


class _LocalTable:
    """Interns dataset-wide text ids into local rows, keeping each text's tokens once."""

    def __init__(self):
        self.row: dict[int, int] = {}
        self.global_ids: list[int] = []
        self.seqs: list[np.ndarray] = []

    def add(self, global_id: int, tokens: np.ndarray) -> int:
        if global_id not in self.row:
            self.row[global_id] = len(self.global_ids)
            self.global_ids.append(global_id)
            self.seqs.append(tokens.astype(np.int32))
        return self.row[global_id]

    def table(self, max_length: int) -> TokenTable:
        lengths = np.array([len(s) for s in self.seqs], np.int64)
        flat = np.concatenate(self.seqs) if self.seqs else np.zeros(0, np.int32)
        return TokenTable(flat, np.concatenate([[0], np.cumsum(lengths)]), (max_length,))


def _split(tokens: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []


@dataclasses.dataclass
class ProcessShards:
    """One process's share of a prepared dataset, with local text rows and their dataset-wide ids."""

    pairs: TrainPairs  # this process's examples, over local query and document rows
    queries: TokenTable
    docs: TokenTable
    query_global_ids: np.ndarray  # int64[local query rows]: dataset-wide query ids
    doc_global_ids: np.ndarray  # int64[local doc rows]
    manifest: dict


def load_process_shards(path: str | os.PathLike, process_index: int, process_count: int) -> ProcessShards:
    """This process's examples; reads only this process's shard files."""
    import tensorflow as tf

    root = upath(path)
    manifest = read_manifest(root)
    shards = manifest["shards"]
    _check_shard_count(manifest, root / MANIFEST, process_count)
    queries, docs = _LocalTable(), _LocalTable()
    q_rows, pos, neg = [], [], []
    for s in shards_of_process(len(shards), process_index, process_count):
        file = root / shards[s]["file"]
        if not file.is_file():
            raise InputError("shard listed in the manifest is missing", file)
        records = 0
        for raw in tf.data.TFRecordDataset(str(local_copy(file))).as_numpy_iterator():  # gs://: fetched
            records += 1
            f = tf.train.Example.FromString(raw).features.feature
            get = lambda k: np.asarray(f[k].int64_list.value, np.int64)  # noqa: E731
            q_rows.append(queries.add(int(get("query_id")[0]), get("query_tokens")))
            for kind, out in (("pos", pos), ("neg", neg)):
                seqs = _split(get(f"{kind}_tokens"), get(f"{kind}_lengths"))
                out.append(np.array([docs.add(int(g), t) for g, t in zip(get(f"{kind}_ids"), seqs)], np.int64))
            if not len(pos[-1]):
                raise InputError(f"record {records} has no positive", file, records, field="pos_ids")
        if records != shards[s]["examples"]:
            raise InputError(f"shard has {records} records, the manifest says {shards[s]['examples']}", file)
    pairs = TrainPairs([], [], np.array(q_rows, np.int64), pos, neg, f"{root} (process {process_index} of "
                       f"{process_count})")
    return ProcessShards(pairs, queries.table(manifest["max_query_length"]), docs.table(manifest["max_doc_length"]),
                         np.array(queries.global_ids, np.int64), np.array(docs.global_ids, np.int64), manifest)


def prepared_batch_source(path: str | os.PathLike, tokenizer: TextTokenizer, global_batch: int,
                          num_negatives: int, seed: int, max_query_length: int, max_doc_length: int,
                          process_index: int, process_count: int) -> DenseBatchSource:
    """The batch source over this process's shards, after checking they match the model and config."""
    manifest_path = upath(path) / MANIFEST
    manifest = read_manifest(path)
    if manifest["tokenizer_fingerprint"] != tokenizer_fingerprint(tokenizer):
        raise InputError("prepared with a different tokenizer or prompts than model.path; prepare again",
                         manifest_path, field="tokenizer_fingerprint")
    for key, want in (("max_query_length", min(max_query_length, tokenizer.max_length)),
                      ("max_doc_length", min(max_doc_length, tokenizer.max_length))):
        if manifest[key] != want:
            raise InputError(f"prepared with {key} {manifest[key]} but the config asks for {want} "
                             f"(set model.{key}={manifest[key]} or prepare again)", manifest_path, field=key)
    if global_batch % process_count:
        raise InputError(f"batch_size {global_batch} is not divisible by {process_count} processes", "config",
                         field="batch_size")
    _check_shard_count(manifest, manifest_path, process_count)
    local_batch = global_batch // process_count
    per_process = [sum(manifest["shards"][s]["examples"] for s in shards_of_process(len(manifest["shards"]), p,
                                                                                     process_count))
                   for p in range(process_count)]
    steps = min(per_process) // local_batch
    if steps < 1:
        raise InputError(f"a process holds only {min(per_process)} examples, fewer than its batch of "
                         f"{local_batch}", manifest_path, field="batch_size")
    mine = load_process_shards(path, process_index, process_count)
    return DenseBatchSource(mine.pairs, mine.queries, mine.docs, local_batch, num_negatives, seed, manifest["pad_id"],
                            fixed_lengths=(manifest["max_query_length"], manifest["max_doc_length"]),
                            query_global_ids=mine.query_global_ids, doc_global_ids=mine.doc_global_ids,
                            plan_stream=process_index + 1, epoch_steps=steps,
                            dataset_identity={"examples": manifest["examples"], "queries": manifest["num_queries"],
                                              "docs": manifest["num_docs"], "source": str(upath(path)),
                                              "tokenizer": manifest["tokenizer_fingerprint"]})
