"""durably: a durable invocation server that speaks Restate's protocols."""

__version__ = "0.1.0"
