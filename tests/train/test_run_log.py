"""Run logs: metrics.jsonl line per record, TensorBoard events, and the PNG plot at close."""

import json

from jaxretrieval.train.run_log import RunLog, drop_replayed_steps, plot_metrics, read_metrics


def test_records_go_to_jsonl_tensorboard_and_a_plot(tmp_path):
    log = RunLog(tmp_path, start_step=0, total_steps=4)
    for step in range(1, 5):
        log.write({"step": step, "loss": 1.0 / step, "learning_rate": 0.1})
        log.progress(step, 1.0 / step)
    log.write({"step": 4, "eval/ndcg@10": 0.5, "best_step": 4})
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 4] and records[-1]["eval/ndcg@10"] == 0.5
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 1.0
    assert list((tmp_path / "tensorboard").iterdir())
    png = (tmp_path / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_metrics(tmp_path / "none.jsonl") == []
    plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 1000


def test_a_resume_drops_the_steps_it_will_replay(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    drop_replayed_steps(path, 2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
