"""The services of the client examples in docs/examples/services.py (Greeter, Payments,
Reminders, Orders, Signup), so that tests/client/test_examples.py runs the examples."""

from __future__ import annotations

from docs.examples.services import greeter, orders, payments, reminders, signup

__all__ = ["greeter", "orders", "payments", "reminders", "signup"]
