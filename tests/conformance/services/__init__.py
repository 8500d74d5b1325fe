"""Test services for the conformance scenarios, written against restate-sdk 1.2.0.

Each module implements one (or a few closely related) of the service contracts of
the Restate SDK conformance suite (see /work/shared/reference/conformance.md §2.3).
``ALL_SERVICES`` maps the contract name to the SDK service object.
"""

from __future__ import annotations

from .awakeable_holder import awakeable_holder
from .block_and_wait_workflow import block_and_wait_workflow
from .cancel_test import cancel_test_blocking_service, cancel_test_runner
from .client_awakeable import client_awakeable
from .counter import counter
from .docs_examples import greeter, orders, payments, reminders, signup
from .failing import failing
from .interpreter import virtual_object_command_interpreter
from .invocation_ops import always_failing, call_chain, stepper
from .kill_test import kill_test_runner, kill_test_singleton
from .list_map import list_object, map_object
from .non_deterministic import non_deterministic
from .ops_test import ops_test_service
from .proxy import proxy
from .utils_service import test_utils_service

ALL_SERVICES = {
    s.name: s
    for s in (
        always_failing,
        awakeable_holder,
        block_and_wait_workflow,
        call_chain,
        cancel_test_blocking_service,
        cancel_test_runner,
        client_awakeable,
        counter,
        failing,
        greeter,
        orders,
        payments,
        reminders,
        signup,
        kill_test_runner,
        kill_test_singleton,
        list_object,
        map_object,
        non_deterministic,
        ops_test_service,
        proxy,
        stepper,
        test_utils_service,
        virtual_object_command_interpreter,
    )
}
