from pathlib import Path

import pytest

from hca_assets.dicom.pseudonyms import MAX_DATE_SHIFT_DAYS, Pseudonymizer, load_mapping

A, B = Pseudonymizer(b"a" * 16), Pseudonymizer(b"b" * 16)


def test_same_key_same_pseudonyms_other_key_different() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert A.uid(uid) == Pseudonymizer(b"a" * 16).uid(uid) != B.uid(uid)
    assert A.patient_id("MRN1") == A.patient_id(" MRN1 ") != B.patient_id("MRN1")
    assert A.uid(uid).startswith("2.25.") and len(A.uid(uid)) <= 64
    assert A.patient_name("MRN1").endswith(A.patient_id("MRN1"))


def test_date_offsets_are_per_patient_and_bounded() -> None:
    offsets = {A.date_offset_days(f"MRN{i}") for i in range(200)}
    assert all(-MAX_DATE_SHIFT_DAYS <= o <= -1 for o in offsets) and len(offsets) > 150
    assert A.date_offset_days("MRN7") == A.date_offset_days("MRN7")


def test_external_mappings_win(tmp_path: Path) -> None:
    (tmp_path / "uids.csv").write_text("id_old,id_new\n1.2.3,9.8.7\n")
    (tmp_path / "patients.csv").write_text("id_old,id_new\nMRN1,STUDY-001\n")
    p = Pseudonymizer(b"a" * 16, load_mapping(tmp_path / "uids.csv"), load_mapping(tmp_path / "patients.csv"))
    assert (p.uid("1.2.3"), p.patient_id("MRN1")) == ("9.8.7", "STUDY-001")
    assert p.uid("1.2.4") == A.uid("1.2.4")


@pytest.mark.parametrize(("text", "match"), [
    ("old,new\n1,2\n", "header"), ("id_old,id_new\n1,\n", ":2: both"), ("id_old,id_new\n1,2\n1,3\n", "mapped twice"),
])
def test_bad_mapping_files(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_mapping(tmp_path / "m.csv")


def test_invalid_uid_mapping_and_short_key() -> None:
    with pytest.raises(ValueError, match="not valid UIDs"):
        Pseudonymizer(b"a" * 16, uid_map={"1.2": "not-a-uid"})
    with pytest.raises(ValueError, match="at least 16"):
        Pseudonymizer(b"short")
