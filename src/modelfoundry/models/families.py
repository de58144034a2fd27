"""Every model family, imported so that it registers itself. Adding a family: one new file in models/ (its config
class, `@register(...)` on its builder) and one name on this line."""

from . import anomaly, cnn, dkt, lm, mlp, pretrained, recommend, rnn, transformer  # noqa: F401
