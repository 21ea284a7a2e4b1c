"""The tiny CLIP's pretraining captions: what they say and which images they are true of."""

from __future__ import annotations

import numpy as np

from ovar.train.pretrain_tiny import COLUMNS, ROWS, Caption, PretrainOptions, band, match_matrix, sample_batch


def test_band_splits_the_frame_side_in_four():
    assert [band(v, 64) for v in (0.0, 15.9, 16.0, 40.5, 63.9, 70.0, -3.0)] == [0, 0, 1, 2, 3, 3, 0]


def test_caption_names_row_and_column_with_direction_words():
    assert Caption("red", "circle", None, 1, 0).text() == "a red circle up high far to the left"
    assert Caption("blue", "square", "small", None, 2).text() == "a small blue square to the right"
    assert Caption("green", "triangle", None, 3, None).text() == "a green triangle down at the bottom"
    words = " ".join(ROWS + COLUMNS).split()
    assert {"left", "right", "up", "down"} <= set(words)
    assert not {"moving", "rotating", "growing", "shrinking"} & set(words)


def test_a_caption_is_true_of_every_image_it_fits():
    truths = [("red", "circle", "small", 0, 3), ("red", "circle", "large", 0, 1), ("blue", "circle", "small", 0, 3)]
    captions = [Caption("red", "circle", None, 0, None), Caption("red", "circle", "small", None, 3),
                Caption("blue", "circle", None, 1, None)]
    expected = [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert match_matrix(truths, captions).tolist() == expected


def test_sampled_captions_describe_their_frames():
    opts = PretrainOptions(colours=["red", "blue"], shapes=["square"], batch_size=24)
    frames, texts, truths, captions = sample_batch(np.random.default_rng(4), opts, ["a photo of {}."])
    assert frames.shape == (24, 64, 64, 3)
    assert match_matrix(truths, captions).diagonal().tolist() == [1.0] * 24
    assert any(c.row is not None and c.column is not None for c in captions)
    for text, cap, (colour, _, _, row, column) in zip(texts, captions, truths):
        assert colour in text and (cap.column is None or COLUMNS[column] in text)
        assert cap.row is None or ROWS[row] in text
