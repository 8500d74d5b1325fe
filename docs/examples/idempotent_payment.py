"""Idempotent payment: charge an order exactly once, whatever the network does.

The order id is the idempotency key. If the connection drops or times out after the
request left, the caller cannot know whether the charge happened; with the key, sending
the same request again is safe: the server runs the handler at most once and answers the
repeat with the stored receipt. ``retry=`` does exactly that automatically.

    python docs/examples/idempotent_payment.py order-42 1999
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from durably.client import Client, InvocationFailed, RetryPolicy, Timeout


class Charge(BaseModel):
    order_id: str
    amount_cents: int
    currency: str = "EUR"


class Receipt(BaseModel):
    order_id: str
    payment_id: str
    amount_cents: int


def pay(client: Client, order_id: str, amount_cents: int) -> Receipt:
    payments = client.service("Payments")
    request = Charge(order_id=order_id, amount_cents=amount_cents)
    try:
        return payments.call(
            "charge", request, output=Receipt, idempotency_key=f"charge/{order_id}", timeout=10
        )
    except Timeout:
        # still running (or done) on the server: wait for the one charge by its key
        handle = payments.invocation("charge", idempotency_key=f"charge/{order_id}")
        return handle.attach(output=Receipt)


def main(argv: list[str]) -> int:
    order_id, amount = argv[0], int(argv[1])
    with Client(retry=RetryPolicy(max_attempts=6, max_delay=10)) as client:
        try:
            receipt = pay(client, order_id, amount)
        except InvocationFailed as e:
            print(f"payment refused ({e.code}): {e.message}", file=sys.stderr)
            return 1
        print(f"paid {receipt.amount_cents} for {receipt.order_id}: {receipt.payment_id}")
        # paying again returns the same receipt: the handler does not run twice
        assert pay(client, order_id, amount) == receipt
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["order-42", "1999"]))
