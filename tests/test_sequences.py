import numpy as np

from semrec.data import Sequences


def test_padding_selection_and_tails():
    s = Sequences.from_lists([[1, 2, 3], [4], [5, 6, 7, 8]])
    assert s.lengths.tolist() == [3, 1, 4]
    assert s.to_padded(3).tolist() == [[1, 2, 3], [-1, -1, 4], [6, 7, 8]]
    assert s.to_padded(3, pad=0, left=False).tolist() == [[1, 2, 3], [4, 0, 0], [6, 7, 8]]
    assert s.select(np.array([2, 0])).to_lists() == [[5, 6, 7, 8], [1, 2, 3]]
    assert s.slice_tail(2, drop_last=1).to_lists() == [[1, 2], [], [6, 7]]
    assert s.last(1).tolist() == [3, 4, 8]
    assert s.select(np.array([0, 2])).last(2).tolist() == [2, 7]
