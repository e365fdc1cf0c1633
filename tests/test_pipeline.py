"""The one segmentation policy: windows, padding, skipping, validation."""

import numpy as np
import pytest

from model.datasets.pipeline import SegmentPolicy, training_segments
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec

SPEC = ModelSpec(task="triplet", encoder=ENCODERS["tiny"])


def test_default_policy_windows_pads_and_skips():
  example, patch = SPEC.example_samples, SPEC.frontend.patch_samples
  hop = patch // 2
  long = np.arange(example + 2 * hop + hop // 2, dtype=np.float32)
  short = np.ones(example // 2 + 1, np.float32)   # Half an example: padded.
  tiny = np.ones(example // 2 - 1, np.float32)    # Below half: skipped.
  segments = training_segments([long, short, tiny], SPEC)
  assert segments.clip_index.tolist() == [0, 0, 0, 1]
  assert segments.padded_clips == 1 and segments.skipped_clips == 1
  for i in range(3):
    np.testing.assert_array_equal(segments.waveforms[i],
                                  long[i * hop:i * hop + example])
  assert segments.waveforms[3].sum() == len(short)  # Zeros after the clip.


def test_policy_fields_map_onto_hop_and_minimum():
  example, patch = SPEC.example_samples, SPEC.frontend.patch_samples
  clip = np.ones(example + 4 * patch, np.float32)
  coarse = SegmentPolicy(hop_patches=2.0, min_example_fraction=1.0)
  assert len(training_segments([clip], SPEC, coarse)) == 3
  assert len(training_segments([clip], SPEC)) == 9
  with pytest.raises(ValueError, match="no clip"):
    training_segments([clip[:example - 1]], SPEC, coarse)


@pytest.mark.parametrize("fields", [dict(hop_patches=0.0),
                                    dict(min_example_fraction=0.0),
                                    dict(min_example_fraction=1.5)])
def test_policy_rejects_invalid_values(fields):
  with pytest.raises(ValueError, match="SegmentPolicy"):
    SegmentPolicy(**fields)
