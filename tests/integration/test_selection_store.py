import pytest
import redis

from rlpost.curation.rounds import CurationRound, RoundScores
from rlpost.storage.store import SelectionStore

pytestmark = pytest.mark.integration


def record(round_id, selected, version=0):
    scores = RoundScores(["a", "b", "c", "d"], [0.1, 0.4, 0.3, 0.2], [False] * 4, [0.5] * 4, selected, {})
    return CurationRound(round_id, round_id, version, scores, wall_s=1.0, tokens=100, flops=1e6)


def test_publish_swap_and_rebuild_after_redis_loses_state(tmp_path, redis_url):
    store = SelectionStore(redis_url, "sel-test", tmp_path / "curation")
    store.publish(record(0, ["b", "c"]))
    assert store.current() == (0, ["b", "c"])
    store.publish(record(4, ["a", "d"], version=4))
    assert store.current() == (4, ["a", "d"])
    client = redis.Redis.from_url(redis_url)
    assert {m.decode() for m in client.zrange("rlpost:sel-test:selection", 0, -1)} == {"a", "d"}
    client.delete("rlpost:sel-test:selection", "rlpost:sel-test:selection:meta")  # Redis restarted empty
    assert store.current() == (4, ["a", "d"])  # rebuilt from the Parquet rounds
    store.truncate_from(4)  # a resumed run before step 4 forgets round 4
    assert store.current() == (0, ["b", "c"])
    other = SelectionStore(redis_url, "sel-other", tmp_path / "other")
    other.publish(record(0, ["a"]))
    assert store.current() == (0, ["b", "c"])  # per-run key prefixes: runs never collide


def test_no_round_is_a_clear_error(tmp_path, redis_url):
    with pytest.raises(LookupError, match="no curation round"):
        SelectionStore(redis_url, "sel-empty", tmp_path / "none").current()
