"""Clip table: manifest round trip and validation of malformed input."""

import pytest

from model.datasets.clips import Clip, ClipTable, read_manifest_csv


def _table(tmp_path):
  return ClipTable.from_rows([
      Clip("a.wav", "spk1", {"keyword": "yes", "speaker": "spk1"}, 1.0),
      Clip("b.wav", "spk2", {"content": "music"}, 6.5, split="test"),
  ], root=str(tmp_path), name="t")


def test_manifest_round_trip(tmp_path):
  table = _table(tmp_path)
  table.to_csv(str(tmp_path / "manifest.csv"))
  back = read_manifest_csv(str(tmp_path / "manifest.csv"))
  assert [dict(c.labels) for c in back] == [dict(c.labels) for c in table]
  assert [c.split for c in back] == ["", "test"]
  assert back.label_columns == ("content", "keyword", "speaker")
  assert back.resolve(back[0]) == str(tmp_path / "a.wav")
  assert len(table.with_label("keyword")) == 1


def test_labels_are_read_only():
  clip = Clip("a.wav", "spk1", {"keyword": "yes"})
  with pytest.raises(TypeError):
    clip.labels["keyword"] = "no"


@pytest.mark.parametrize("bad, message", [
    (dict(labels={"split": "x"}), "reserved"),
    (dict(duration_s=float("nan")), "duration_s"),
    (dict(split="dev"), "split"),
    (dict(client_id=""), "client_id"),
])
def test_clip_validation(bad, message):
  kwargs = dict(path="a.wav", client_id="c", labels={}, duration_s=1.0)
  kwargs.update(bad)
  with pytest.raises(ValueError, match=message):
    Clip(**kwargs)


@pytest.mark.parametrize("text, message", [
    ("path,speaker\na.wav,s1\n", "missing required column 'client_id'"),
    ("path,client_id,kw\na.wav,c1,yes,EXTRA\n", ":2: expected 3 fields"),
    ("path,client_id,kw\na.wav\n", ":2: expected 3 fields"),
    ("path,client_id,duration_s\na.wav,c1,-1\n", "duration_s"),
])
def test_malformed_manifest_names_line_and_field(tmp_path, text, message):
  path = tmp_path / "m.csv"
  path.write_text(text)
  with pytest.raises(ValueError, match=message):
    read_manifest_csv(str(path))


def test_byte_order_mark_is_accepted(tmp_path):
  path = tmp_path / "m.csv"
  path.write_bytes("path,client_id,kw\na.wav,c1,yes\n".encode("utf-8-sig"))
  assert read_manifest_csv(str(path))[0].labels["kw"] == "yes"
