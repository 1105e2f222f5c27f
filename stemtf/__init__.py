"""stemtf: split songs into stems (vocals, drums, bass, ...) with TensorFlow/Keras.

Importing ``stemtf`` does not import TensorFlow; ``Separator`` is loaded on first use::

    from stemtf import Separator
    separator = Separator.from_pretrained("4stems")
    stems = separator.separate(waveform, sample_rate)   # {stem: (num_samples, num_channels)}
"""

__version__ = "0.1.0"

__all__ = ["Separator", "__version__"]


def __getattr__(name: str):
    if name == "Separator":
        from stemtf.separator import Separator

        return Separator
    raise AttributeError(f"module 'stemtf' has no attribute {name!r}")
