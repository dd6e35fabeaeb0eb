"""gRPC transport: servicers translate protobuf messages to domain calls and domain errors to status codes."""
