"""The service layer: gRPC servicers and broker subscriber handlers."""
