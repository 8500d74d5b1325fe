"""Sans-IO implementation of Restate's service invocation protocol.

Bytes in, messages out: framing, protobuf messages, version negotiation and discovery manifest
parsing. Nothing in this package touches a socket or an event loop.
"""
