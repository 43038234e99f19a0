"""Report decoding for the DFFG generator: the word vocabulary, the transformer decoder and beam search."""
from xr.decode.beam import beam_search, greedy
from xr.decode.vocab import Vocabulary

__all__ = ["Vocabulary", "beam_search", "greedy"]
