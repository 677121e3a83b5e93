import numpy as np
import pytest

from hca_assets.evaluation.retrieval import evaluate_retrieval


def test_metrics_on_a_hand_made_example() -> None:
    # two classes; each patient has one item per class; vectors put classes on two axes
    v = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9], [0.2, 0.8]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = ["a", "a", "a", "b", "b", "b"]
    m = evaluate_retrieval(v, labels, ["p1", "p2", "p3", "p1", "p2", "p3"], ["s1", "s2", "s3", "s4", "s5", "s6"])
    assert m.overall["P@1"] == 1.0 and m.overall["top1_accuracy"] == 1.0 and m.overall["mAP"] == 1.0
    assert m.overall["P@3"] == pytest.approx(2 / 3)  # 4 candidates from other patients: 2 relevant, then 1 wrong
    assert m.n == {"a": 3, "b": 3}


def test_same_patient_and_series_never_count() -> None:
    v = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    # the identical vector belongs to the same patient: it must be skipped, leaving only a wrong neighbour
    m = evaluate_retrieval(v, ["a", "a", "b"], ["p1", "p1", "p2"], ["s1", "s2", "s3"])
    assert m.overall == {} and m.n == {}  # no query has a relevant item from another patient
    # item 1 is another patient's, but in item 0's series: counted, it would be each one's perfect first hit
    w = np.array([[1, 0], [1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    m = evaluate_retrieval(w, ["a", "a", "b", "a"], ["p1", "p2", "p3", "p4"], ["s1", "s1", "s3", "s4"])
    assert m.n == {"a": 3}  # "b" has no other member: skipped
    assert m.per_class["a"]["P@1"] == 0.0  # with the twin excluded, the nearest allowed item is always the "b"


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        evaluate_retrieval(np.zeros((2, 2), np.float32), ["a"], ["p"], ["s"])
