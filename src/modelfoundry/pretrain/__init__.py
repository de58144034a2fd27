"""Self-supervised pretraining data: raw corpora read as documents, a tokenizer trained on them (or a model's own),
documents packed into memory-mapped token streams, and the blocks (masked for mlm) the training loop reads."""

from .packing import Blocks, Masker
from .prepare import CorpusData, CorpusPreprocessor, prepare_corpus
from .score import corpus_scores

__all__ = ["Blocks", "Masker", "CorpusData", "CorpusPreprocessor", "prepare_corpus", "corpus_scores"]
